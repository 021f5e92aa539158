"""Export: ONNX (fp32, fp16, int8) and OpenVINO (fp32, bf16, int8), each checked against PyTorch.

See :mod:`eseg.export.pipeline` (what ``eseg export`` runs: the :class:`~eseg.export.pipeline.Exporter`),
:mod:`eseg.export.onnx`, :mod:`eseg.export.openvino`, and :mod:`eseg.export.formats` (the formats,
precisions, quantization modes and opset, named once; torch-free).
"""
