"""Export: ONNX (fp32, fp16, int8) and OpenVINO (fp32, bf16, int8), each checked against PyTorch.

See :mod:`eseg.export.pipeline` (what ``eseg export`` runs), :mod:`eseg.export.onnx` and
:mod:`eseg.export.openvino`.
"""
