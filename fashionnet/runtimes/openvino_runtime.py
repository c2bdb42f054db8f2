"""Run FashionNet's query path with OpenVINO on CPU (``Predictor(runtime="openvino")``).

OpenVINO compiles the same ONNX file that :mod:`fashionnet.runtimes.onnx_runtime` exports and caches (no
second export), in float32: its outputs equal torch's within the float tolerance the ONNX runtime is
held to (tests/test_openvino_runtime.py), including the landmark pooling's ``MaxRoiPool``. On Intel
CPUs its convolution kernels are faster than ONNX Runtime's for this network
(scripts/benchmark_runtime.py measures the three runtimes side by side), so "auto" takes it where it
is installed.

The precision is pinned to f32: OpenVINO would otherwise run bfloat16 on CPUs with AMX, faster
but with embeddings far enough from float32's to change search results, so an index built in one
precision would drift when queried in the other (docs/experiments/cpu_runtimes.md). ``openvino`` is optional: ``pip install
fashionnet-search[openvino]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from fashionnet.device import PerThreadCount


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class OpenVinoForward:
    """Calls an exported FashionNet ONNX file through OpenVINO: ``forward(images) -> dict of tensors``
    like ``FashionNet.forward``. A model is compiled per thread count (torch's at the time of the
    call, as the serving code sets it) and each call makes its own inference request, so
    concurrent calls are safe."""

    def __init__(self, path: str | os.PathLike, output_names: tuple[str, ...] | None = None, precision: str = "f32"):
        self.path = Path(path)
        self.precision = precision  # "bf16" only for measuring (scripts/benchmark_runtime.py --bf16)
        self._compiled = PerThreadCount(self._compile)
        outputs = self.compiled().outputs  # fails now on a bad file
        # The graph's output names in order (ONNX Runtime's): OpenVINO may give an output tensor
        # several names, when it is also the input of another node.
        self.keys = tuple(output_names) if output_names is not None else tuple(o.get_any_name() for o in outputs)
        if len(self.keys) != len(outputs):
            raise ValueError(f"{self.path} has {len(outputs)} outputs, {len(self.keys)} names given")

    def compiled(self, threads: int | None = None):
        """The model compiled for ``threads`` CPU threads (default: torch's count now)."""
        return self._compiled.get(threads)

    def _compile(self, threads: int):
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        return core.compile_model(core.read_model(str(self.path)), "CPU", config)

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        compiled = self.compiled()
        array = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        results = compiled.create_infer_request().infer({0: array})
        # copies: the request's buffers are reused by OpenVINO once the request is gone
        return {key: torch.from_numpy(np.array(results[output])) for key, output in zip(self.keys, compiled.outputs)}
