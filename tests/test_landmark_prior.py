"""Unsure landmarks fall back on where their slot sits in the predicted garment box."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from fashionnet.calibration.landmark_prior import MIN_ROWS, BoxLayoutPrior
from fashionnet.data.schema import BBOX_COLUMNS, LANDMARK_VIS_COLUMNS, LANDMARK_X_COLUMNS, LANDMARK_Y_COLUMNS
from fashionnet.inference.predictor import Predictor
from fashionnet.landmarks import ABSENT, NUM_LANDMARKS, VISIBLE
from fashionnet.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tests.test_localisation import GARMENT, SIDE, canvas_box_in_input, force_box, garment_photo

UPPER = np.array([[0.3, 0.0], [0.7, 0.0], [0.1, 0.5], [0.9, 0.5], [0.25, 0.6], [0.75, 0.6], [0.2, 1.0], [0.8, 1.0]])


def boxed_rows(n: int, clothes_type: int, layout: np.ndarray, rng, hidden_slot: int | None = None) -> pd.DataFrame:
    """Rows whose visible landmarks sit exactly at ``layout`` (fractions) of a random box."""
    rows = []
    for _ in range(n):
        x1, y1 = rng.uniform(0, 200, 2)
        w, h = rng.uniform(50, 300, 2)
        xy = np.array([x1, y1]) + layout * np.array([w, h])
        vis = np.full(NUM_LANDMARKS, VISIBLE)
        if hidden_slot is not None:
            vis[hidden_slot] = ABSENT
            xy[hidden_slot] = np.nan
        rows.append({"clothes_type": clothes_type, **dict(zip(BBOX_COLUMNS, (x1, y1, x1 + w, y1 + h))),
                     **dict(zip(LANDMARK_X_COLUMNS, xy[:, 0])), **dict(zip(LANDMARK_Y_COLUMNS, xy[:, 1])),
                     **dict(zip(LANDMARK_VIS_COLUMNS, vis))})
    return pd.DataFrame(rows)


def test_layout_is_each_types_place_in_its_box_and_falls_back_where_it_must():
    rng = np.random.default_rng(0)
    lower = UPPER[::-1].copy()
    frame = pd.concat([boxed_rows(MIN_ROWS, 1, UPPER, rng, hidden_slot=4), boxed_rows(MIN_ROWS, 2, lower, rng),
                       boxed_rows(MIN_ROWS - 1, 3, UPPER * 0.5, rng)], ignore_index=True)
    prior = BoxLayoutPrior.fit(frame)
    assert prior.fitted_on == 3 * MIN_ROWS - 1
    np.testing.assert_allclose(np.delete(prior.layouts["1"], 4, axis=0), np.delete(UPPER, 4, axis=0), atol=1e-5)
    np.testing.assert_allclose(prior.layouts["2"], lower, atol=1e-5)
    # a slot type 1 never shows takes the mean over every row that shows it; type 3 has too few rows
    np.testing.assert_allclose(prior.layouts["1"][4], prior.layouts["all"][4])
    assert "3" not in prior.layouts
    boxes = np.array([[100.0, 50.0, 300.0, 450.0]])
    np.testing.assert_allclose(prior.layout_points(boxes, [3]), prior.layout_points(boxes, [None]))
    np.testing.assert_allclose(prior.layout_points(boxes, [2])[0, 0], [100 + lower[0, 0] * 200, 50 + lower[0, 1] * 400], atol=1e-3)
    # the state survives a checkpoint's plain types
    again = BoxLayoutPrior.from_state(prior.to_state())
    assert again.layouts.keys() == prior.layouts.keys() and again.threshold == prior.threshold
    with pytest.raises(ValueError, match="garment box"):
        BoxLayoutPrior.fit(frame.assign(bbox_x1=np.nan))


def test_sure_points_stay_and_unsure_ones_move_towards_the_layout_in_proportion():
    prior = BoxLayoutPrior({"all": UPPER}, threshold=0.5)
    boxes = np.array([[0.0, 0.0, 100.0, 200.0]])
    predicted = np.full((1, NUM_LANDMARKS, 2), 10.0)
    confidence = np.array([[0.9, 0.5, 0.25, 0.0, 0.6, 0.6, 0.6, 0.6]])
    placed = prior.place(predicted, confidence, boxes, [None])
    layout = UPPER * [100.0, 200.0]
    np.testing.assert_allclose(placed[0, [0, 1, 4]], predicted[0, [0, 1, 4]])  # at or above the threshold
    np.testing.assert_allclose(placed[0, 3], layout[3])  # no confidence at all: the layout's point
    np.testing.assert_allclose(placed[0, 2], (predicted[0, 2] + layout[2]) / 2)  # half the threshold: half way


def test_predictor_puts_unsure_landmarks_on_the_garment_not_the_centre():
    """A model whose heatmaps are flat (every point at the input's centre, lowest confidence)
    still puts the collar at the top of the garment it boxed, away from the photo's centre."""
    torch.manual_seed(0)
    from fashionnet.models import FashionNetConfig, create_model
    from tests.test_localisation import flat_heatmaps

    model = create_model(FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=SIDE)).eval()
    force_box(model, canvas_box_in_input(GARMENT))
    flat_heatmaps(model)
    args = (model, model.config, {"categories": [], "attributes": []}, {"image_size": SIDE}, "test")
    plain = Predictor(*args, device="cpu", fold_batch_norms=False, crop_below=0, runtime="torch")
    guided = Predictor(*args, device="cpu", fold_batch_norms=False, crop_below=0, landmark_prior=BoxLayoutPrior({"all": UPPER}), runtime="torch")
    photo = garment_photo()
    before, after = plain.predict(photo), guided.predict(photo)
    x1, y1, x2, y2 = after.garment_box
    for lm_before, lm_after, (fx, fy) in zip(before.landmarks, after.landmarks, UPPER):
        assert lm_after.confidence < 0.25 and lm_after.from_box_layout == pytest.approx(1 - lm_after.confidence / 0.25)
        assert lm_before.from_box_layout == 0.0
        share = lm_after.from_box_layout
        expected = ((1 - share) * lm_before.x + share * (x1 + fx * (x2 - x1)), (1 - share) * lm_before.y + share * (y1 + fy * (y2 - y1)))
        assert (lm_after.x, lm_after.y) == pytest.approx(expected, abs=0.5)
    collar = after.landmarks[0]
    # the flat heatmap's point is the photo's centre (400, 300); the garment's top edge is at y = 80
    assert abs(collar.y - GARMENT[1]) < abs(before.landmarks[0].y - GARMENT[1]) - 100
    assert GARMENT[0] <= collar.x <= GARMENT[2]


def test_training_stores_the_layout_and_a_damaged_one_is_refused(tiny_checkpoint, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    prior = BoxLayoutPrior.from_state(ckpt["landmark_prior"])
    assert prior.fitted_on > 0 and {"1", "2", "3"} & set(prior.layouts)
    assert Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch").landmark_prior is not None
    bad = tmp_path / "bad.pt"
    extra = {k: v for k, v in ckpt.items() if k not in ("format", "model", "model_config", "label_maps", "preprocessing", "epoch", "model_checksum")}
    extra["landmark_prior"] = {"layouts": {"1": [[0.5, 0.5]] * NUM_LANDMARKS}}  # no "all" entry
    save_checkpoint(bad, model_state=ckpt["model"], model_config=ckpt["model_config"], label_maps=ckpt["label_maps"],
                    preprocessing=ckpt["preprocessing"], epoch=ckpt["epoch"], **extra)
    with pytest.raises(CheckpointError, match=r"bad\.pt.*landmark box layout"):
        Predictor.from_checkpoint(bad, device="cpu", runtime="torch")
