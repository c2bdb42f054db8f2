"""The CPU runtimes of the exported query path: ONNX Runtime (``onnx_runtime``, which also exports and
caches the ONNX file) and OpenVINO (``openvino_runtime``); ``selection`` resolves "auto" and falls
back openvino -> onnx -> torch."""
