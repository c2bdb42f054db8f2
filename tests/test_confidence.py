"""Per-landmark confidence from the heatmap: high for one sharp peak, low for a flat or split map,
and on each predicted Landmark as a user (page, API) sees it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fashionnet.inference.prediction import LOW_CONFIDENCE
from fashionnet.inference.predictor import Predictor
from fashionnet.models import FashionNetConfig, create_model
from fashionnet.models.branches import heatmap_confidence


def gaussian(h: int, w: int, row: float, col: float, sigma: float) -> torch.Tensor:
    """Log of a Gaussian bump (logits whose softmax is that bump), centred on cell (row, col)."""
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return -((ys - row) ** 2 + (xs - col) ** 2) / (2 * sigma**2)


def test_confidence_is_high_for_a_peak_and_low_for_a_flat_or_split_heatmap():
    h = w = 14
    peak = torch.full((h, w), -20.0)
    peak[4, 9] = 20.0
    split = torch.full((h, w), -20.0)
    split[2, 2] = split[11, 11] = 20.0  # two places: the soft-argmax lands between them, on neither
    maps = torch.stack([peak, torch.zeros(h, w), split, gaussian(h, w, 6, 6, 0.7), gaussian(h, w, 6, 6, 1.5),
                        gaussian(h, w, 6, 6, 3.0)])[None]
    conf = heatmap_confidence(maps)[0]
    assert conf.shape == (6,) and ((conf >= 0) & (conf <= 1)).all()
    assert conf[0] > 0.99 and conf[3] > 0.8
    assert conf[1] < 0.05 and conf[2] < 0.05  # flat, split
    assert conf[3] > conf[4] > conf[5]  # the wider the bump, the less sure
    assert conf[5] < LOW_CONFIDENCE < conf[3]


class _FixedHeatmaps(torch.nn.Module):
    """Stands in for the heatmap head: landmark 0 a sharp peak on one cell, the others flat."""

    def __init__(self, row: int, col: int):
        super().__init__()
        self.row, self.col = row, col

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        maps = torch.zeros(b, 8, h, w)
        maps[:, 0] = -30.0
        maps[:, 0, self.row, self.col] = 30.0
        return maps


def test_predicted_landmarks_carry_their_heatmap_confidence():
    torch.manual_seed(0)
    model = create_model(FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=96, box_head=False)).eval()
    model.landmark_branch.heatmaps = _FixedHeatmaps(2, 3)
    predictor = Predictor(model, model.config, {"categories": [], "attributes": []}, {"image_size": 96}, "test", device="cpu",
                          fold_batch_norms=False, runtime="torch")
    pred = predictor.predict(Image.new("RGB", (192, 192), (90, 120, 200)))
    sure, *guesses = pred.landmarks
    assert sure.confidence > 0.99 and not sure.low_confidence
    cells = 96 // model.trunk_stride  # the heatmap grid; the photo is twice the input side
    assert sure.x == pytest.approx((3 + 0.5) / cells * 192, abs=1e-3) and sure.y == pytest.approx((2 + 0.5) / cells * 192, abs=1e-3)
    assert all(lm.confidence < LOW_CONFIDENCE and lm.low_confidence for lm in guesses)
    shown = pred.as_dict()["landmarks"]
    assert shown[0]["confidence"] == pytest.approx(sure.confidence) and shown[0]["low_confidence"] is False
    assert all(lm["low_confidence"] for lm in shown[1:])


def test_fc_head_has_no_confidence_and_nothing_is_flagged():
    model = create_model(FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=64, landmark_head="fc")).eval()
    predictor = Predictor(model, model.config, {"categories": [], "attributes": []}, {"image_size": 64}, "test", device="cpu", runtime="torch")
    pred = predictor.predict(Image.new("RGB", (80, 60), (10, 200, 10)))
    assert all(lm.confidence is None and not lm.low_confidence for lm in pred.landmarks)
    assert np.isfinite([lm.x for lm in pred.landmarks]).all()
