"""Garment localisation: the predicted box in the photo's pixels, the crop around a small garment,
and the second pass whose landmarks come back in the original photo's pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from fashionnet.data.transforms import to_original_coords
from fashionnet.inference.predictor import Predictor
from fashionnet.inference.localisation import (
    CROP_BELOW_AREA,
    area_fraction,
    box_to_original,
    boxes_to_original,
    crop_region,
    predict_localised,
    wants_crop,
)
from fashionnet.models import FashionNetConfig, create_model

SIDE = 96
CANVAS = (800, 600)
GARMENT = (120, 80, 280, 300)  # x1, y1, x2, y2 in the canvas: 7% of its area, off centre


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def force_box(model, box) -> None:
    """Make the box head predict ``box`` ((x1, y1, x2, y2) in [0, 1] of the input) for every photo."""
    x1, y1, x2, y2 = box
    last = model.box_head.fc[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([_logit(x1), _logit(y1), _logit((x2 - x1) / (1 - x1)), _logit((y2 - y1) / (1 - y1))]))


def flat_heatmaps(model) -> None:
    """Every heatmap flat: each landmark at the centre of the input, with the lowest confidence."""
    last = model.landmark_branch.heatmaps[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()


def canvas_box_in_input(box, canvas=CANVAS, side=SIDE):
    """A box in canvas pixels -> [0, 1] of the letterboxed input (the canvas is wider than high)."""
    w, h = canvas
    scale = side / max(w, h)
    pad_y = (side - round(h * scale)) // 2
    x1, y1, x2, y2 = box
    return (x1 * scale / side, (y1 * scale + pad_y) / side, x2 * scale / side, (y2 * scale + pad_y) / side)


def garment_photo() -> Image.Image:
    photo = Image.new("RGB", CANVAS, (235, 235, 230))
    photo.paste((200, 30, 40), GARMENT)
    return photo


@pytest.fixture
def forced():
    torch.manual_seed(0)
    model = create_model(FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=SIDE)).eval()
    force_box(model, canvas_box_in_input(GARMENT))
    flat_heatmaps(model)
    # one view: these tests compare the embedding with the crop's own forward pass
    predictor = Predictor(model, model.config, {"categories": [], "attributes": []}, {"image_size": SIDE}, "test",
                          device="cpu", fold_batch_norms=False, flip_average=False, runtime="torch")
    return model, predictor


def test_box_maps_to_original_pixels_and_its_area_decides_the_crop():
    from fashionnet.data.transforms import letterbox_geometry

    geometry = letterbox_geometry(*CANVAS, SIDE)
    box = box_to_original(canvas_box_in_input(GARMENT), geometry)
    np.testing.assert_allclose(box, GARMENT, atol=1e-6)
    assert area_fraction(box, CANVAS) == pytest.approx(160 * 220 / (800 * 600))
    assert wants_crop(box, CANVAS) and not wants_crop(box, CANVAS, below=0.05)
    assert not wants_crop((0, 0, 700, 500), CANVAS)  # the garment fills the photo
    assert not wants_crop(None, CANVAS)
    assert not wants_crop((10, 10, 14, 14), CANVAS)  # a few pixels: nothing to look at again
    # a box wholly in the letterbox padding is no box
    assert box_to_original((0.1, 0.0, 0.9, 0.1), geometry) is None
    left, top, width, height = crop_region(GARMENT, CANVAS, margin=0.25)
    assert (left, top, width, height) == (80, 25, 240, 330)


@pytest.mark.parametrize("pixel", [(130, 90), (275, 295), (200, 190)])
def test_crop_round_trip_puts_a_landmark_on_its_original_pixel(forced, pixel):
    """A landmark on a marked pixel goes through the crop transform and comes back to that pixel,
    and in the model input it sits on the mark."""
    _, predictor = forced
    photo = garment_photo()
    x, y = pixel
    photo.paste((0, 255, 0), (x - 2, y - 2, x + 3, y + 3))
    xy = np.full((8, 2), np.nan, dtype=np.float32)
    xy[0] = (x + 0.5, y + 0.5)
    tensor, landmarks, _, geometry = predictor.crop_transform(photo, xy, None, GARMENT)
    assert geometry.region_w < CANVAS[0] / 2  # it is a crop
    back = to_original_coords(landmarks[0].numpy(), geometry, normalized=True)
    np.testing.assert_allclose(back, (x + 0.5, y + 0.5), atol=1e-3)
    # the pixel under the landmark in the model input is the green mark
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    col, row = (landmarks[0] * SIDE).long().tolist()
    rgb = tensor[:, row, col] * std + mean
    assert rgb[1] > 0.8 and rgb[0] < 0.3, rgb


def test_small_garment_is_cropped_and_landmarks_come_back_in_original_pixels(forced):
    model, predictor = forced
    pred = predictor.predict(garment_photo())
    assert pred.cropped
    np.testing.assert_allclose(pred.garment_box, GARMENT, atol=0.5)
    # flat heatmaps put each landmark at the centre of the input: of the crop, i.e. the garment's
    # centre in the photo, not the photo's centre (400, 300)
    left, top, width, height = crop_region(GARMENT, CANVAS, predictor.crop_margin)
    for lm in pred.landmarks:
        assert lm.x == pytest.approx(left + width / 2, abs=2.0) and lm.y == pytest.approx(top + height / 2, abs=2.0)
        assert GARMENT[0] < lm.x < GARMENT[2] and GARMENT[1] < lm.y < GARMENT[3]
    # the embedding is the crop's (cut around the first pass's box)
    first, geometry, _ = predictor.preprocess(garment_photo())
    with torch.no_grad():
        box = boxes_to_original(model(first[None]), [geometry])[0]
        tensor = predictor.crop_transform(garment_photo(), None, None, box)[0]
        crop_embedding = model(tensor[None])["embedding"][0].numpy()
    np.testing.assert_allclose(pred.embedding, crop_embedding, atol=1e-5)
    assert pred.as_dict()["cropped"] is True and len(pred.as_dict()["garment_box"]) == 4


def test_large_garment_or_threshold_zero_is_not_cropped(forced):
    model, predictor = forced
    whole = predict_localised(predictor, [garment_photo()], below=0.0)[0]
    assert not whole.cropped
    assert whole.landmarks[0].x == pytest.approx(400, abs=5) and whole.landmarks[0].y == pytest.approx(300, abs=5)
    np.testing.assert_allclose(whole.garment_box, GARMENT, atol=0.5)
    force_box(model, (0.05, 0.15, 0.95, 0.85))
    assert area_fraction(predictor.predict(garment_photo()).garment_box, CANVAS) > CROP_BELOW_AREA
    assert not predictor.predict(garment_photo()).cropped


def test_batch_mixes_cropped_and_whole_photos_in_order(forced):
    _, predictor = forced
    tall = Image.new("RGB", (150, 600), (200, 30, 40))  # the forced box falls in its letterbox padding
    preds = predictor.predict_batch([garment_photo(), tall, garment_photo()])
    assert [p.cropped for p in preds] == [True, False, True] and preds[1].garment_box is None
    alone = predictor.predict(garment_photo())
    np.testing.assert_allclose(preds[2].embedding, alone.embedding, atol=1e-5)
    assert preds[1].landmarks[0].x == pytest.approx(75, abs=2) and preds[1].landmarks[0].y == pytest.approx(300, abs=5)
    preds = predictor.predict_batch([garment_photo(), garment_photo().resize((200, 150))], crop_below=0.5)
    assert [p.original_size for p in preds] == [CANVAS, (200, 150)]
    np.testing.assert_allclose(preds[1].garment_box, np.asarray(GARMENT) / 4, atol=0.5)


def test_model_without_box_head_is_never_cropped():
    model = create_model(FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=SIDE, box_head=False)).eval()
    predictor = Predictor(model, model.config, {"categories": [], "attributes": []}, {"image_size": SIDE}, "test", device="cpu", runtime="torch")
    pred = predictor.predict(garment_photo())
    assert pred.garment_box is None and not pred.cropped
    assert pred.as_dict()["garment_box"] is None


def test_indexer_embeds_gallery_photos_through_the_same_two_passes(forced, tmp_path):
    from indexer.embedding import embed_images

    _, predictor = forced
    paths = [tmp_path / "small.png", tmp_path / "full.png"]
    garment_photo().save(paths[0])
    Image.new("RGB", (300, 400), (200, 30, 40)).save(paths[1])
    done = embed_images(predictor, [str(p) for p in paths], batch_size=2, workers=0, progress=False)
    preds = [predictor.predict(path) for path in paths]
    for i, pred in enumerate(preds):
        np.testing.assert_allclose(done.embeddings[i], pred.embedding, atol=1e-5)
        assert done.rows.loc[i, "pred_left_collar_x"] == pytest.approx(pred.landmarks[0].x, abs=1e-3)
    assert done.rows["cropped"].tolist() == [p.cropped for p in preds] and preds[0].cropped
