"""snn2loihi: from PyTorch SNN training to Loihi, with spike-exact deployment checks.

This package's own modules are the core the stages share: the NetX schema, file I/O and
validation (:mod:`.schema`, :mod:`.netx_io`, :mod:`.validate`), Loihi's fixed-point model
(:mod:`.loihi` constants and bounds, :mod:`.neuron`, :mod:`.synapse`), the quantization grid
(:mod:`.quant`), errors and atomic writes. The core imports none of the layers above it:
the stages ``snn2loihi.train``, ``snn2loihi.export`` and ``snn2loihi.deploy``, and the
application layer ``snn2loihi.app`` (CLI, demo). See docs/architecture.md.
"""

__version__ = "0.1.0"
