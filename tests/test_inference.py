"""Predictor: any image in, landmarks in the original image's pixels, category, attributes, embedding."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from fashionnet.data.images import ImageLoadError
from fashionnet.inference.predictor import Predictor
from fashionnet.landmarks import LANDMARK_NAMES, present_mask
from fashionnet.models import FashionNetConfig, create_model
from fashionnet.models.checkpoint import model_from_checkpoint


class _FixedLandmarks(torch.nn.Module):
    """Wraps a model and replaces its predicted landmarks with known normalised points."""

    def __init__(self, model, points):
        super().__init__()
        self.model = model
        self.points = torch.as_tensor(points, dtype=torch.float32)

    def forward(self, images, *args):
        out = dict(self.model(images, *args))
        out["landmarks"] = self.points.expand(images.shape[0], -1, -1).clone()
        return out


def _predictor(model, size=96, **kw):
    config = model.config if hasattr(model, "config") else model.model.config
    return Predictor(model, config, {"categories": [], "attributes": []}, {"image_size": size}, "test", device="cpu", runtime="torch", **kw)


def test_landmarks_map_back_through_letterbox_to_original_pixels():
    config = FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=96)
    points = torch.tensor([[0.5, 0.5], [0.25, 0.375], [0.75, 0.625], [0.0, 0.25]] + [[0.5, 0.5]] * 4)
    predictor = _predictor(_FixedLandmarks(create_model(config), points))
    # 200 x 100 image -> scale 0.48 -> 96 x 48 content, padded 24 px above and below
    pred = predictor.predict(Image.new("RGB", (200, 100), (200, 50, 50)))
    xy = np.array([[lm.x, lm.y] for lm in pred.landmarks])
    expected = np.stack([points[:, 0] * 96 / 0.48, (points[:, 1] * 96 - 24) / 0.48], axis=1)
    np.testing.assert_allclose(xy, expected, atol=1e-3)
    assert [lm.name for lm in pred.landmarks] == list(LANDMARK_NAMES)
    assert pred.original_size == (200, 100)


def test_trained_predictor_returns_named_outputs(tiny_checkpoint, synth_root):
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch")
    path = next((synth_root / "consumer2shop" / "img").rglob("comsumer_*.jpg"))
    pred = predictor.predict(path)
    assert pred.category in predictor.category_names and 0 < pred.category_prob <= 1
    assert len(pred.attributes) == 5 and all(n in predictor.attribute_names for n, _ in pred.attributes)
    probs = [p for _, p in pred.attributes]
    assert probs == sorted(probs, reverse=True)
    assert pred.embedding.shape == (predictor.embedding_dim,)
    assert np.linalg.norm(pred.embedding) == pytest.approx(1.0, abs=1e-4)
    # the points the predicted clothes type has get a visibility; the others are absent
    present = present_mask(pred.clothes_type)
    assert [lm.visibility == "absent" for lm in pred.landmarks] == [not p for p in present]
    assert {lm.visibility for lm, p in zip(pred.landmarks, present) if p} <= {"visible", "occluded", "truncated"}


def test_batch_api_matches_single_images(tiny_checkpoint, synth_root):
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch")
    paths = sorted((synth_root / "consumer2shop" / "img").rglob("*.jpg"))[:3]
    batch = predictor.predict_batch(paths)
    for path, b in zip(paths, batch):
        np.testing.assert_allclose(predictor.predict(path).embedding, b.embedding, atol=1e-5)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "RGBA", "L", "P", "LA"])
def test_odd_image_modes_embed_like_rgb(tiny_checkpoint, synth_root, mode):
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch")
    path = next((synth_root / "consumer2shop" / "img").rglob("shop_*.jpg"))
    rgb = Image.open(path).convert("RGB")
    if mode == "I;16":
        odd = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
        reference = rgb.convert("L").convert("RGB")
    elif mode in ("L", "LA"):
        odd, reference = rgb.convert(mode), rgb.convert("L").convert("RGB")
    elif mode == "P":
        odd = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
        reference = odd.convert("RGB")
    else:
        odd, reference = rgb.convert(mode), rgb
    data = _encode(odd, "TIFF" if mode in ("CMYK", "I;16") else "PNG")
    got = predictor.predict(data).embedding
    want = predictor.predict(reference).embedding
    assert np.isfinite(got).all()
    assert float(got @ want) > 0.98, mode


def test_array_input_any_size(tiny_checkpoint):
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch")
    arr = (np.random.default_rng(0).random((37, 301, 3)) * 255).astype(np.uint8)
    pred = predictor.predict(arr)
    assert pred.original_size == (301, 37)
    assert all(-301 <= lm.x <= 2 * 301 for lm in pred.landmarks)


def test_bad_images_give_clear_errors(tiny_checkpoint, tmp_path):
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty\.jpg: the file is empty"):
        predictor.predict(empty)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ImageLoadError, match=r"notes\.jpg: not an image"):
        predictor.predict(text)
    good = _encode(Image.new("RGB", (64, 64), "red"), "JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageLoadError, match=r"truncated\.jpg: corrupt or truncated"):
        predictor.predict(truncated)


def test_decompression_bomb_is_refused(tmp_path):
    from fashionnet.data.images import MAX_IMAGE_PIXELS, load_image

    side = int(MAX_IMAGE_PIXELS**0.5) + 100
    bomb = tmp_path / "bomb.png"
    Image.new("1", (side, side)).save(bomb)  # a few KiB on disk, 64+ megapixels decoded
    assert bomb.stat().st_size < 2_000_000
    with pytest.raises(ImageLoadError, match="bomb.png: image is .*decompression-bomb guard"):
        load_image(bomb)


def test_slots_the_predicted_clothes_type_lacks_are_absent(tiny_checkpoint, synth_root):
    from fashionnet.data.readers import read_consumer2shop
    from fashionnet.landmarks import present_mask

    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch")
    frame = read_consumer2shop(synth_root / "consumer2shop")
    truth = dict(frame.groupby("category")["clothes_type"].first().astype(int))
    assert predictor.category_clothes_types == truth
    for path in sorted((synth_root / "consumer2shop" / "img").rglob("*.jpg"))[:6]:
        pred = predictor.predict(path)
        assert pred.clothes_type == truth[pred.category]
        absent = [lm.visibility == "absent" for lm in pred.landmarks]
        assert absent == list(~present_mask(pred.clothes_type))
        assert len(pred.present_landmarks) == int(present_mask(pred.clothes_type).sum())


def test_checkpoints_from_before_the_heatmap_head_load_as_fc():
    """Their model_config has no landmark_head key; their weights are the fc head's."""
    torch.manual_seed(0)
    fc = create_model(FashionNetConfig(backbone="tiny", embedding_dim=8, image_size=64, landmark_hidden=16, landmark_head="fc")).eval()
    old_config = {k: v for k, v in fc.config.to_dict().items() if k != "landmark_head"}
    model, config = model_from_checkpoint({"model_config": old_config, "model": fc.state_dict()}, "old.pt")
    model.eval()
    assert config.landmark_head == "fc"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x)["landmarks"], fc(x)["landmarks"])


@pytest.mark.parametrize("appearance_weight, flip_average", [(0.0, True), (0.7, True), (0.7, False)])
def test_score_parts_add_up_to_the_search_score(synth_root, appearance_weight, flip_average):
    """The page's "global + local + bias (+ appearance)" caption: the parts of each result's score
    add up to the query's inner product with that result's embedding, one view or flip-averaged."""
    torch.manual_seed(0)
    model = create_model(FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=96, appearance_weight=appearance_weight)).eval()
    predictor = _predictor(model, fold_batch_norms=False, flip_average=flip_average)
    photos = sorted((synth_root / "consumer2shop").glob("img/*/*/*/*.jpg"))[:4]
    embeddings = np.stack([p.embedding for p in predictor.predict_batch(photos)])
    assert embeddings.shape[1] == predictor.embedding_dim == 16 + (64 if appearance_weight else 0)
    parts = predictor.score_parts(embeddings[0], photos[1:])
    assert all(("appearance" in p) == (appearance_weight > 0) for p in parts)
    np.testing.assert_allclose([sum(p.values()) for p in parts], embeddings[1:] @ embeddings[0], atol=1e-4)
    if appearance_weight:
        assert all(p["appearance"] > 0 for p in parts)  # pooled ReLU maps: never negative, and here above 0
