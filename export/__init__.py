"""Export stage: trained checkpoint -> NetX ``.net`` (plus headroom/accuracy report) and ONNX.

Modules: :mod:`~snn2loihi.export.loader` (checkpoint -> deployable model),
:mod:`~snn2loihi.export.headroom` (24-bit u/v figures), :mod:`~snn2loihi.export.accuracy`
(emulator vs integer-SNN accuracy), :mod:`~snn2loihi.export.report`,
:mod:`~snn2loihi.export.exporter` (the whole export), :mod:`~snn2loihi.export.onnx_export`
(ANN branch as ONNX) and :mod:`~snn2loihi.export.convert` (ONNX ReLU net -> ``.net``).
"""
