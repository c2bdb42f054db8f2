"""Which runtime runs the Predictor's forward pass: "auto" resolved to the fastest installed, and
the exported forward with its fallbacks (openvino to onnx, onnx to torch).

The runtimes' own modules are called through the module (``onnx_runtime.onnx_available()``), so a
test that replaces one of their functions changes what this module sees.
"""

from __future__ import annotations

import os
import warnings
from typing import Callable

import torch
from torch import nn

from fashionnet.runtimes import onnx_runtime, openvino_runtime

# "onnx": ONNX Runtime (fewer, fused kernels: much less time per query than torch on a CPU;
# docs/experiments/cpu_runtimes.md).
# "openvino": OpenVINO compiling the same ONNX file (fashionnet.runtimes.openvino_runtime), faster again on
# Intel CPUs (scripts/benchmark_runtime.py). "auto": on a CPU, the first of openvino, onnx that is
# installed, else torch.
RUNTIMES = ("auto", "torch", "onnx", "openvino")


def resolve_runtime(runtime: str, device: torch.device) -> str:
    """The runtime "auto" stands for on ``device``: the fastest installed (openvino, then onnx) on a
    CPU, else torch. Other names are returned as they are."""
    if runtime != "auto":
        return runtime
    if device.type != "cpu" or not onnx_runtime.onnx_available():  # openvino compiles the file torch exports with onnx
        return "torch"
    return "openvino" if openvino_runtime.openvino_available() else "onnx"


def exported_forward_or_none(model: nn.Module, input_side: int, model_checksum: str, device: torch.device,
                             cache_dir: str | os.PathLike | None = None, runtime: str = "onnx",
                             name: str = "fashionnet") -> tuple[Callable | None, str]:
    """(forward, runtime name) for ``runtime`` "onnx" or "openvino" (which compiles the same cached
    export). Each is checked against torch; what is unavailable falls back with a warning: openvino
    to onnx, onnx to (None, "torch"), and the caller then runs torch."""
    if device.type != "cpu":
        warnings.warn(f"runtime {runtime!r} runs on the CPU only; running torch on {device}", RuntimeWarning, stacklevel=3)
        return None, "torch"
    try:
        onnx_forward = onnx_runtime.cached_onnx_forward(model, input_side, model_checksum, cache_dir, name)
    except onnx_runtime.OnnxUnavailable as exc:
        warnings.warn(f"{exc}; running torch instead", RuntimeWarning, stacklevel=3)
        return None, "torch"
    if runtime == "openvino":
        try:
            forward = openvino_runtime.OpenVinoForward(onnx_forward.path, output_names=onnx_forward.keys)
            problem = onnx_runtime.agrees_with_torch(model, forward, input_side)
        except Exception as exc:  # not installed, or it cannot compile this graph
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            return forward, "openvino"
        warnings.warn(f"OpenVINO cannot run {onnx_forward.path} ({problem}); running ONNX Runtime instead", RuntimeWarning, stacklevel=3)
    return onnx_forward, "onnx"
