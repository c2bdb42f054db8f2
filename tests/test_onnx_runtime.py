"""Predictor(runtime="onnx"): the ONNX Runtime forward gives what the torch forward gives.

Tolerances: embeddings within 1e-4 (max abs) and cosine > 0.9999, landmarks within 1e-3 of the
image side, the same predicted category, the same top-20 search results. Skipped when onnxruntime
or onnx (torch's exporter needs it) is not installed: pip install fashionnet-search[onnx].
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install fashionnet-search[onnx])")
pytest.importorskip("onnx", reason="onnx, which torch's ONNX exporter needs, is not installed (pip install fashionnet-search[onnx])")

from fashionnet.inference.predictor import Predictor  # noqa: E402
from fashionnet.runtimes import onnx_runtime  # noqa: E402

EMBEDDING_ATOL = 1e-4
COSINE_MIN = 0.9999
LANDMARK_ATOL = 1e-3  # fraction of the image side


def _photos(synth_root: Path, n: int) -> list[Path]:
    photos = sorted((synth_root / "consumer2shop").glob("img/*/*/*/comsumer_*.jpg"))
    assert len(photos) >= n
    return photos[:: max(1, len(photos) // n)][:n]


def _assert_same_outputs(torch_predictor: Predictor, onnx_predictor: Predictor, photos: list[Path], runtime: str = "onnx") -> None:
    assert torch_predictor.runtime == "torch" and onnx_predictor.runtime == runtime
    batch = torch.stack([torch_predictor.preprocess(p)[0] for p in photos])
    expected, got = torch_predictor.forward_batch(batch), onnx_predictor.forward_batch(batch)
    assert set(got) >= set(onnx_runtime.OUTPUTS)
    a, b = expected["embedding"].numpy(), got["embedding"].numpy()
    assert np.abs(a - b).max() < EMBEDDING_ATOL
    assert (a * b).sum(axis=1).min() / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)).max() > COSINE_MIN
    assert (expected["landmarks"] - got["landmarks"]).abs().max().item() < LANDMARK_ATOL
    assert {"box", "landmark_confidence"} <= set(expected) and set(got) == set(expected)
    for key in ("category_logits", "attribute_logits", "visibility_logits", "trunk_stats", "box", "landmark_confidence",
                *(["appearance_feature"] if "appearance_feature" in expected else [])):
        assert got[key].shape == expected[key].shape
        assert torch.allclose(got[key], expected[key], atol=1e-3, rtol=1e-3), key
    # what a user sees: the decoded predictions
    for p, q in zip(torch_predictor.predict_batch(photos), onnx_predictor.predict_batch(photos)):
        _assert_same_prediction(p, q)


def _assert_same_prediction(p, q) -> None:
    assert p.category == q.category and p.cropped == q.cropped
    assert np.abs(p.embedding - q.embedding).max() < EMBEDDING_ATOL
    side = max(p.original_size)
    np.testing.assert_allclose(p.garment_box, q.garment_box, atol=LANDMARK_ATOL * side)
    for lp, lq in zip(p.landmarks, q.landmarks):
        assert abs(lp.x - lq.x) < LANDMARK_ATOL * side and abs(lp.y - lq.y) < LANDMARK_ATOL * side
        assert lp.visibility == lq.visibility
        assert lp.confidence == pytest.approx(lq.confidence, abs=1e-3)


def test_exported_roi_pool_equals_torchvision(tmp_path):
    """The landmark pooling layer's roi_pool runs as ONNX MaxRoiPool; same maxima on random inputs."""
    import onnxruntime as ort
    from torchvision.ops import roi_pool

    class Pool(torch.nn.Module):
        def forward(self, fmap, boxes):
            return roi_pool(fmap, boxes, (2, 2), spatial_scale=1.0 / 16)

    path = tmp_path / "roi_pool.onnx"
    gen = torch.Generator().manual_seed(0)
    fmap = torch.randn(3, 5, 14, 11, generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Pool(), (fmap, torch.tensor([[0.0, 1, 2, 60, 70]])), str(path), dynamo=False, opset_version=onnx_runtime.OPSET,
                          input_names=["fmap", "boxes"], dynamic_axes={"fmap": {0: "b"}, "boxes": {0: "n"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert any(node.op_type == "MaxRoiPool" for node in __import__("onnx").load(str(path)).graph.node)
    # boxes of any size, partly outside the map, with fractional corners
    xy1 = torch.rand(40, 2, generator=gen) * torch.tensor([180.0, 230.0]) - 10
    wh = torch.rand(40, 2, generator=gen) * 80
    boxes = torch.cat([torch.randint(0, 3, (40, 1), generator=gen).float(), xy1, xy1 + wh], dim=1)
    expected = roi_pool(fmap, boxes, (2, 2), spatial_scale=1.0 / 16)
    got = session.run(None, {"fmap": fmap.numpy(), "boxes": boxes.numpy()})[0]
    assert expected.abs().sum() > 0
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-6)


def torch_and_exported(checkpoint: Path, runtime: str, cache: Path) -> tuple[Predictor, Predictor, Path]:
    """The checkpoint's torch Predictor, the same through ``runtime`` exporting into ``cache``, and the cache."""
    return (Predictor.from_checkpoint(checkpoint, device="cpu", runtime="torch"),
            Predictor.from_checkpoint(checkpoint, device="cpu", runtime=runtime, onnx_cache_dir=cache), cache)


@pytest.fixture(scope="module")
def tiny_predictors(tiny_checkpoint, tmp_path_factory):
    return torch_and_exported(tiny_checkpoint, "onnx", tmp_path_factory.mktemp("onnx_cache"))


def test_tiny_model_onnx_matches_torch(tiny_predictors, synth_root):
    torch_predictor, onnx_predictor, _ = tiny_predictors
    _assert_same_outputs(torch_predictor, onnx_predictor, _photos(synth_root, 6))


@pytest.mark.parametrize("colour_window, detail_window, runtime",
                         [(0.0, 0.0, "onnx"), (0.1, 0.0, "onnx"), (0.1, 0.0, "openvino"), (0.1, 0.25, "onnx"), (0.1, 0.25, "openvino")])
def test_whitened_model_onnx_matches_torch(synth_root, tmp_path, colour_window, detail_window, runtime):
    """A whitened embedding and its descriptor, landmark colours and detail windows included (and
    then whitened part by part), come through the export."""
    from fashionnet.models import FashionNetConfig, create_model
    from fashionnet.models.checkpoint import state_dict_checksum

    if runtime == "openvino":
        pytest.importorskip("openvino", reason="openvino is not installed (pip install fashionnet-search[openvino])")
    torch.manual_seed(0)
    # OpenVINO cannot convert an empty (0-class) head, so the heads have classes
    model = create_model(FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=96, appearance_weight=1.0,
                                          num_categories=3, num_attributes=4, colour_window=colour_window,
                                          detail_window=detail_window)).eval()
    parts = model.config.whitening_part_count
    groups = torch.eye(parts).repeat_interleave(2, dim=0) if colour_window else None  # parts of 2 dimensions each
    model.set_whitening(torch.randn(model.descriptor_dim) * 0.01, torch.randn(model.descriptor_dim, 2 * parts), groups=groups)
    labels = {"categories": ["a", "b", "c"], "attributes": ["w", "x", "y", "z"]}
    args = (model, model.config, labels, {"image_size": 96}, state_dict_checksum(model.state_dict()))
    torch_predictor = Predictor(*args, device="cpu", runtime="torch")
    onnx_predictor = Predictor(*args, device="cpu", runtime=runtime, onnx_cache_dir=tmp_path)
    _assert_same_outputs(torch_predictor, onnx_predictor, _photos(synth_root, 4), runtime)
    batch = torch.stack([torch_predictor.preprocess(p)[0] for p in _photos(synth_root, 4)])
    assert torch.allclose(onnx_predictor.forward_batch(batch)["descriptor"], torch_predictor.forward_batch(batch)["descriptor"], atol=1e-4)


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_efficientnet_lite0_exported_matches_torch(synth_root, tmp_path, runtime):
    """The demo's architecture (roi_pool landmark pooling, appearance part) through each runtime."""
    if runtime == "openvino":
        pytest.importorskip("openvino", reason="openvino is not installed (pip install fashionnet-search[openvino])")
    from fashionnet.models import FashionNetConfig, create_model
    from fashionnet.models.checkpoint import state_dict_checksum

    torch.manual_seed(0)
    # as the demo model: the pooled appearance appended to the search embedding
    config = FashionNetConfig(backbone="efficientnet_lite0", pretrained=True, num_categories=9, num_attributes=12, image_size=224,
                              appearance_weight=1.0)
    model = create_model(config).eval()
    labels = {"categories": [f"c{i}" for i in range(9)], "attributes": [f"a{i}" for i in range(12)]}
    args = (model, config, labels, {"image_size": 224}, state_dict_checksum(model.state_dict()))
    _assert_same_outputs(Predictor(*args, device="cpu", runtime="torch"), Predictor(*args, device="cpu", runtime=runtime, onnx_cache_dir=tmp_path),
                         _photos(synth_root, 4), runtime=runtime)


def test_onnx_crops_a_small_garment_like_torch(tmp_path):
    """The second pass runs through ONNX Runtime too: same crop, box, landmarks and embedding."""
    from PIL import Image

    from fashionnet.models import FashionNetConfig, create_model
    from fashionnet.models.checkpoint import state_dict_checksum
    from tests.test_localisation import GARMENT, canvas_box_in_input, force_box, garment_photo

    torch.manual_seed(0)
    model = create_model(FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=96)).eval()
    force_box(model, canvas_box_in_input(GARMENT))
    args = (model, model.config, {"categories": [], "attributes": []}, {"image_size": 96}, state_dict_checksum(model.state_dict()))
    by_torch, by_onnx = Predictor(*args, device="cpu", runtime="torch"), Predictor(*args, device="cpu", runtime="onnx", onnx_cache_dir=tmp_path)
    assert by_onnx.runtime == "onnx"
    photos = [garment_photo(), Image.new("RGB", (150, 600), (200, 30, 40))]
    got = by_onnx.predict_batch(photos)
    assert [p.cropped for p in got] == [True, False]
    for p, q in zip(by_torch.predict_batch(photos), got):
        if p.garment_box is None:
            assert q.garment_box is None
            p.garment_box = q.garment_box = (0, 0, 0, 0)
        _assert_same_prediction(p, q)


def _assert_same_top_20(torch_predictor: Predictor, other_predictor: Predictor, index_dir: Path, photos: list[Path]) -> None:
    from indexer.search import SearchEngine
    from indexer.store import EmbeddingIndex

    index = EmbeddingIndex.load(index_dir, device="cpu")
    by_torch, by_other = SearchEngine(index, torch_predictor, index_dir), SearchEngine(index, other_predictor, index_dir)
    for photo in photos:
        a, b = by_torch.query(photo, k=20), by_other.query(photo, k=20)
        assert list(a.matches["id"]) == list(b.matches["id"])
        np.testing.assert_allclose(a.matches["score"], b.matches["score"], atol=1e-4)


def test_search_through_onnx_returns_the_torch_top_20(tiny_predictors, tiny_index, synth_root):
    torch_predictor, onnx_predictor, _ = tiny_predictors
    _assert_same_top_20(torch_predictor, onnx_predictor, tiny_index, _photos(synth_root, 5))


def test_export_is_cached_and_reused(tiny_predictors, tiny_checkpoint, monkeypatch):
    _, onnx_predictor, cache = tiny_predictors
    files = list(cache.glob("fashionnet-*.onnx"))  # the clothes-type prior's export sits beside it
    assert len(files) == 1 and onnx_predictor.model_checksum in files[0].name
    assert not list(cache.glob("*.tmp"))  # the atomic write left nothing behind
    before = files[0].stat().st_mtime_ns

    def no_export(*args, **kwargs):
        raise AssertionError("re-exported a cached model")

    monkeypatch.setattr(onnx_runtime, "export_onnx", no_export)
    again = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="onnx", onnx_cache_dir=cache)
    assert again.runtime == "onnx" and files[0].stat().st_mtime_ns == before


def test_failed_export_falls_back_to_torch_with_a_warning(tiny_checkpoint, tmp_path, monkeypatch, synth_root):
    def broken(model, side, path):
        raise onnx_runtime.OnnxUnavailable("exporting the model to ONNX failed: simulated")

    monkeypatch.setattr(onnx_runtime, "export_onnx", broken)
    with pytest.warns(RuntimeWarning, match="simulated; running torch instead"):
        predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="onnx", onnx_cache_dir=tmp_path)
    assert predictor.runtime == "torch"
    assert predictor.predict(_photos(synth_root, 1)[0]).embedding.shape == (predictor.embedding_dim,)


def test_unknown_runtime_is_refused(tiny_checkpoint):
    with pytest.raises(ValueError, match="runtime must be one of"):
        Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="tensorrt")


@pytest.mark.parametrize("ih, iw, oh, ow", [(6, 6, 7, 7), (3, 5, 7, 7), (10, 9, 4, 3)])
def test_exportable_adaptive_pool_equals_torch(ih, iw, oh, ow):
    """Where the sizes do not divide, the export replaces adaptive pooling by averaging matrices."""
    x = torch.randn(2, 4, ih, iw, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.AdaptiveAvgPool2d((oh, ow))(x)
    assert torch.allclose(onnx_runtime._FixedAdaptiveAvgPool(ih, iw, oh, ow)(x), expected, atol=1e-6)


def test_cli_query_with_the_onnx_runtime_answers_like_torch(tiny_index, synth_root, tmp_path, monkeypatch, capsys):
    import json

    from indexer.cli import main as indexer

    monkeypatch.setenv("FASHIONNET_ONNX_CACHE", str(tmp_path / "onnx_cache"))
    photo = _photos(synth_root, 1)[0]
    answers = {}
    for runtime in ("torch", "onnx"):
        assert indexer(["query", str(tiny_index), str(photo), "-k", "10", "--json", "--runtime", runtime, "--device", "cpu"]) == 0
        answers[runtime] = json.loads(capsys.readouterr().out)["results"]
    assert [r["item_id"] for r in answers["onnx"]] == [r["item_id"] for r in answers["torch"]]
    np.testing.assert_allclose([r["score"] for r in answers["onnx"]], [r["score"] for r in answers["torch"]], atol=1e-4)
    assert list((tmp_path / "onnx_cache").glob("*.onnx")), "the model was exported to the cache"


def test_auto_runtime_takes_the_fastest_installed_and_torch_elsewhere(tiny_checkpoint, tmp_path, monkeypatch):
    import warnings

    from fashionnet.runtimes import openvino_runtime

    expected = "openvino" if openvino_runtime.openvino_available() else "onnx"
    assert Predictor.from_checkpoint(tiny_checkpoint, device="cpu", onnx_cache_dir=tmp_path).runtime == expected  # the default: auto
    monkeypatch.setattr(openvino_runtime, "openvino_available", lambda: False)
    assert Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="auto", onnx_cache_dir=tmp_path).runtime == "onnx"
    monkeypatch.setattr(onnx_runtime, "onnx_available", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not installed is no fault under auto: no warning
        assert Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="auto").runtime == "torch"