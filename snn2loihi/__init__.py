"""snn2loihi: from PyTorch SNN training to Loihi, with spike-exact deployment checks.

The top-level package holds what the stages share: the NetX schema and file I/O
(:mod:`snn2loihi.schema`, :mod:`snn2loihi.netx_io`), Loihi's integer neuron and synapses
(:mod:`snn2loihi.neuron`, :mod:`snn2loihi.synapse`) and the CLI. The stages are
``snn2loihi.train``, ``snn2loihi.export`` and ``snn2loihi.deploy``.
"""

__version__ = "0.1.0"
