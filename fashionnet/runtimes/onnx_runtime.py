"""Run FashionNet's query path with ONNX Runtime on CPU (``Predictor(runtime="onnx")``).

The whole forward pass - trunk, global and landmark branches, landmark pooling, fusion, embedding
and heads - is exported once to an ONNX file and run by ONNX Runtime, which fuses the small
operations of the network into fewer kernels than torch's eager mode runs on a CPU
(scripts/benchmark_runtime.py measures both). The outputs are the same dict of tensors as
``FashionNet.forward`` (tests/test_onnx_runtime.py holds them to torch's).

Export details:

- torchvision's ``roi_pool`` (the landmark pooling layer) exports as the ONNX ``MaxRoiPool``
  operator, which ONNX Runtime implements on CPU; the tests compare it with torchvision's.
- The network is exported for one square input side (the Predictor's letterbox side) and any
  batch size. Two operations whose ONNX form needs sizes the tracer loses are replaced in the
  exported copy by their fixed-size equivalents at that side: the EfficientNet "same" padding
  computed from the input size (a constant pad) and the landmark branch's adaptive average pooling
  (a plain average pooling, or two averaging matrices where the sizes do not divide).
- The file is written atomically and cached under a folder keyed by the model checksum, the
  input side and :data:`EXPORT_VERSION`, so it is exported once per model. A loaded file is
  checked against torch on one example before it is used.

``onnxruntime`` (and ``onnx``, which torch's exporter needs) are optional: ``pip install
fashionnet-search[onnx]``. Without them, or when an export fails, the Predictor warns and keeps
running torch.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fashionnet.device import PerThreadCount
from fashionnet.models.fashionnet import OPTIONAL_OUTPUTS

# The tensors FashionNet.forward returns, in the order of the exported graph's outputs; the model's
# OPTIONAL_OUTPUTS (landmark confidence, garment box) follow where it has them.
OUTPUTS = ("embedding", "landmarks", "visibility_logits", "category_logits", "attribute_logits", "trunk_stats",
           "global_feature", "local_feature", "fusion_feature", "pooled_visible")
OPSET = 17
# Bump when the export changes, so cached files from an older export are not reused.
EXPORT_VERSION = 2
CACHE_ENV = "FASHIONNET_ONNX_CACHE"


class OnnxUnavailable(RuntimeError):
    """onnxruntime or onnx is not installed, or the model could not be exported or checked."""


def onnx_available() -> bool:
    """True when both onnxruntime (to run) and onnx (which torch's exporter needs) import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def default_cache_dir() -> Path:
    """$FASHIONNET_ONNX_CACHE, else $XDG_CACHE_HOME/fashionnet/onnx (~/.cache/fashionnet/onnx)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fashionnet" / "onnx"


class _ConstantPadConv(nn.Module):
    """A "same"-padding convolution with its padding fixed for one input size."""

    def __init__(self, conv: nn.Conv2d, pads: list[int]):
        super().__init__()
        self.conv = conv
        self.pads = pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.Conv2d.forward(self.conv, F.pad(x, self.pads))


class _FixedAdaptiveAvgPool(nn.Module):
    """Adaptive average pooling of an (ih, iw) map to (oh, ow) as two averaging matrices, which
    export for any sizes (the exporter refuses adaptive pooling when the sizes do not divide)."""

    def __init__(self, ih: int, iw: int, oh: int, ow: int):
        super().__init__()
        self.register_buffer("rows", self._bins(ih, oh))
        self.register_buffer("cols", self._bins(iw, ow).T.contiguous())

    @staticmethod
    def _bins(size: int, out: int) -> torch.Tensor:
        weights = torch.zeros(out, size)
        for i in range(out):  # bin i averages cells [floor(i * size / out), ceil((i + 1) * size / out))
            start, end = (i * size) // out, -((-(i + 1) * size) // out)
            weights[i, start:end] = 1.0 / (end - start)
        return weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.rows, x), self.cols)


def _input_sizes(model: nn.Module, side: int, wanted: Callable[[nn.Module], bool]) -> dict[str, tuple[int, int]]:
    """(H, W) of the input each ``wanted`` submodule sees on a (1, 3, side, side) image."""
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [module.register_forward_pre_hook(lambda m, args, n=name: sizes.__setitem__(n, tuple(args[0].shape[-2:])))
             for name, module in model.named_modules() if wanted(module)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, side, side))
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def fixed_size_copy(model: nn.Module, side: int) -> nn.Module:
    """A copy of ``model`` for (B, 3, side, side) inputs whose sizes the ONNX tracer can follow:
    input-dependent "same" paddings become constant pads and adaptive average poolings become
    plain average poolings (or averaging matrices where the sizes do not divide). Same outputs at
    that side."""
    model = copy.deepcopy(model).eval().cpu()
    for name, (ih, iw) in _input_sizes(model, side, lambda m: bool(getattr(m, "_needs_dynamic_pad", False))).items():
        conv = model.get_submodule(name)
        (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        _replace(model, name, _ConstantPadConv(conv, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2]))
    for name, (ih, iw) in _input_sizes(model, side, lambda m: isinstance(m, nn.AdaptiveAvgPool2d)).items():
        out = model.get_submodule(name).output_size
        oh, ow = (out, out) if isinstance(out, int) else out
        oh, ow = oh or ih, ow or iw  # None keeps that input size
        if (ih, iw) == (oh, ow):
            _replace(model, name, nn.Identity())
        elif ih % oh == 0 and iw % ow == 0:
            _replace(model, name, nn.AvgPool2d((ih // oh, iw // ow)))
        else:
            _replace(model, name, _FixedAdaptiveAvgPool(ih, iw, oh, ow))
    return model


def output_names(model: nn.Module, side: int) -> tuple[str, ...]:
    """The outputs this model has, in export order: for a FashionNet :data:`OUTPUTS`, then its
    optional ones; for any other model returning a dict, its tensors in the order it returns them."""
    with torch.no_grad():
        out = model(torch.zeros(1, 3, side, side, device=next(model.parameters()).device))
    if not all(key in out for key in OUTPUTS):
        return tuple(key for key, value in out.items() if torch.is_tensor(value))
    return (*OUTPUTS, *(key for key in OPTIONAL_OUTPUTS if key in out))


class _TupleOutputs(nn.Module):
    def __init__(self, model: nn.Module, keys: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.keys = keys

    def forward(self, images: torch.Tensor):
        out = self.model(images)
        return tuple(out[key] for key in self.keys)


def export_onnx(model: nn.Module, input_side: int, path: str | os.PathLike) -> Path:
    """Export ``model`` (a FashionNet) for (B, 3, input_side, input_side) inputs, any batch size,
    to ``path``. Written to a temporary file in the same folder and renamed, so a reader never
    sees half a file. Raises :class:`OnnxUnavailable` when onnx is missing or the export fails."""
    if not onnx_available():
        raise OnnxUnavailable("the ONNX runtime needs the onnx and onnxruntime packages: pip install fashionnet-search[onnx]")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fixed = fixed_size_copy(model, input_side)
    keys = output_names(fixed, input_side)
    wrapped = _TupleOutputs(fixed, keys)
    example = torch.zeros(2, 3, input_side, input_side)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on constant shapes, the legacy exporter's deprecation
            torch.onnx.export(wrapped, (example,), tmp, dynamo=False, opset_version=OPSET, input_names=["images"],
                              output_names=list(keys), dynamic_axes={name: {0: "batch"} for name in ("images", *keys)})
        os.replace(tmp, path)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [""])[0][:300]  # the exporter appends whole graphs
        raise OnnxUnavailable(f"exporting the model to ONNX failed: {type(exc).__name__}: {reason}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class OnnxForward:
    """Calls an exported FashionNet through ONNX Runtime: ``forward(images) -> dict of tensors``
    like ``FashionNet.forward`` (the keys of :data:`OUTPUTS` and the optional outputs the file has).

    The session uses as many intra-op threads as torch does at the time of the call (the serving
    code sets 1; fashionnet.device) and sequential execution; a session is made per thread count.
    Safe to share between threads: ``InferenceSession.run`` is, and sessions are made under a lock.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._sessions = PerThreadCount(self._make_session)
        # fail now, not at the first query, on an unreadable file
        self.keys = tuple(o.name for o in self.session().get_outputs())

    def session(self, threads: int | None = None):
        """The session for ``threads`` intra-op threads (default: torch's count now)."""
        return self._sessions.get(threads)

    def _make_session(self, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads sleep instead of spinning: a spinning pool takes the cores from
        # FAISS, which searches right after the forward (docs/experiments/query_latency_fixes.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        array = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        values = self.session().run(list(self.keys), {"images": array})
        return {key: torch.from_numpy(value) for key, value in zip(self.keys, values)}


def agrees_with_torch(model: nn.Module, forward: OnnxForward, side: int, atol: float = 1e-3) -> str | None:
    """None when the ONNX forward matches torch on a fixed random image, else what differs."""
    example = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(example.to(next(model.parameters()).device))
    got = forward(example)
    missing = sorted(set(output_names(model, side)) - set(got))
    if missing:
        return f"the export lacks {', '.join(missing)}"
    for key in got:
        a, b = expected[key].float().cpu(), got[key].float()
        if a.shape != b.shape or not torch.allclose(a, b, atol=atol, rtol=1e-3):
            diff = (a - b).abs().max().item() if a.shape == b.shape else f"shape {tuple(b.shape)} != {tuple(a.shape)}"
            return f"{key} differs from torch ({diff})"
    return None


def cached_onnx_forward(model: nn.Module, input_side: int, model_checksum: str,
                        cache_dir: str | os.PathLike | None = None, name: str = "fashionnet") -> OnnxForward:
    """The model's ONNX forward, exported to ``cache_dir`` (default :func:`default_cache_dir`)
    unless an export of this checksum and side is already there. Checked against torch on one
    example. Raises :class:`OnnxUnavailable` on any failure."""
    if not onnx_available():
        raise OnnxUnavailable("the ONNX runtime needs the onnx and onnxruntime packages: pip install fashionnet-search[onnx]")
    if not model_checksum:
        raise OnnxUnavailable("the model has no checksum to key its cached ONNX export by")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / f"{name}-{model_checksum[:40]}-{int(input_side)}px-v{EXPORT_VERSION}.onnx"
    if not path.is_file():
        export_onnx(model, input_side, path)
    try:
        forward = OnnxForward(path)
    except Exception as exc:
        raise OnnxUnavailable(f"ONNX Runtime could not load {path}: {type(exc).__name__}: {exc}") from exc
    problem = agrees_with_torch(model, forward, input_side)
    if problem:
        raise OnnxUnavailable(f"the ONNX export {path} does not reproduce the torch model: {problem}")
    return forward
