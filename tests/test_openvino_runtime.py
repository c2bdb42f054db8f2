"""Predictor(runtime="openvino"): OpenVINO compiles the cached ONNX export and answers what torch
answers, within the same tolerances as ONNX Runtime (tests/test_onnx_runtime.py). Skipped when
openvino, onnxruntime or onnx is not installed."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("openvino", reason="openvino is not installed (pip install fashionnet-search[openvino])")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install fashionnet-search[onnx])")
pytest.importorskip("onnx", reason="onnx, which torch's ONNX exporter needs, is not installed")

from fashionnet.inference.predictor import Predictor  # noqa: E402
from fashionnet.runtimes import openvino_runtime  # noqa: E402
from tests.test_onnx_runtime import _assert_same_outputs, _assert_same_top_20, _photos, torch_and_exported  # noqa: E402


@pytest.fixture(scope="module")
def openvino_predictors(tiny_checkpoint, tmp_path_factory):
    return torch_and_exported(tiny_checkpoint, "openvino", tmp_path_factory.mktemp("openvino_cache"))


def test_tiny_model_openvino_matches_torch(openvino_predictors, synth_root):
    by_torch, by_openvino, cache = openvino_predictors
    assert isinstance(by_openvino._onnx, openvino_runtime.OpenVinoForward)
    assert len(list(cache.glob("fashionnet-*.onnx"))) == 1  # compiled from the one cached export
    assert by_openvino.type_prior.runtime == "openvino"  # the clothes-type prior's export sits beside it
    assert len(list(cache.glob("garment-type-prior-*.onnx"))) == 1
    _assert_same_outputs(by_torch, by_openvino, _photos(synth_root, 6), runtime="openvino")


def test_search_through_openvino_returns_the_torch_top_20(openvino_predictors, tiny_index, synth_root):
    by_torch, by_openvino, _ = openvino_predictors
    _assert_same_top_20(by_torch, by_openvino, tiny_index, _photos(synth_root, 5))


def test_concurrent_calls_each_get_their_own_answer(openvino_predictors, synth_root):
    """The API serves queries from several threads at once: no call may see another's buffers."""
    by_torch, by_openvino, _ = openvino_predictors
    photos = _photos(synth_root, 4)
    batches = [torch.stack([by_torch.preprocess(p)[0]]) for p in photos]
    expected = [by_torch.forward_batch(b)["embedding"].numpy() for b in batches]
    got: dict[int, list[np.ndarray]] = {i: [] for i in range(len(photos))}

    def worker(i):
        for _ in range(5):
            got[i].append(by_openvino.forward_batch(batches[i])["embedding"].numpy())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(photos))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, answers in got.items():
        assert len(answers) == 5
        for answer in answers:
            np.testing.assert_allclose(answer, expected[i], atol=1e-4)


def test_openvino_that_cannot_compile_falls_back_to_onnx_runtime(tiny_checkpoint, tmp_path, monkeypatch, synth_root):
    class Broken:
        def __init__(self, path, **kwargs):
            raise RuntimeError("simulated: unsupported operation MaxRoiPool")

    monkeypatch.setattr(openvino_runtime, "OpenVinoForward", Broken)
    with pytest.warns(RuntimeWarning, match="OpenVINO cannot run .*simulated: unsupported operation MaxRoiPool.*running ONNX Runtime"):
        predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="openvino", onnx_cache_dir=tmp_path)
    assert predictor.runtime == "onnx"
    assert predictor.predict(_photos(synth_root, 1)[0]).embedding.shape == (predictor.embedding_dim,)


def test_openvino_that_disagrees_with_torch_is_not_used(tiny_checkpoint, tmp_path, monkeypatch):
    real_call = openvino_runtime.OpenVinoForward.__call__

    def off_by_a_little(self, images):
        out = real_call(self, images)
        out["embedding"] = out["embedding"] + 0.01
        return out

    monkeypatch.setattr(openvino_runtime.OpenVinoForward, "__call__", off_by_a_little)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="openvino", onnx_cache_dir=tmp_path)
    assert predictor.runtime == "onnx"
    assert any("embedding differs from torch" in str(w.message) for w in caught)

