"""Where a clothes type's landmarks sit inside its garment box, to fall back on when the heatmap is unsure.

On photos unlike the training ones the landmark heatmaps go flat and their soft-argmax drifts
(onto a face, beside the body), while the garment box still frames the garment. So a landmark whose
confidence is below ``threshold`` is pulled towards where that slot sits, on average, inside the
predicted box of the predicted clothes type (fitted on the training annotations' boxes):

    xy = a * predicted + (1 - a) * box layout,   a = confidence / threshold  (a = 1 at or above it)

On the synthetic test splits this lowered landmark NE too (docs/experiments/box_layout_fallback.md). The layout is
stored in the checkpoint (``landmark_prior``) by training and by ``scripts/calibrate_ood.py``.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from fashionnet.data.schema import bboxes_of, landmarks_of
from fashionnet.landmarks import NUM_LANDMARKS, VISIBLE

DEFAULT_THRESHOLD = 0.25  # the page's "unsure" mark (fashionnet.inference.prediction.LOW_CONFIDENCE)
MIN_ROWS = 10  # a clothes type with fewer annotated boxes takes the overall layout
_ALL = "all"


class BoxLayoutPrior:
    """Each clothes type's mean landmark layout inside the garment box, as fractions of the box."""

    def __init__(self, layouts: Mapping[str, Any], threshold: float = DEFAULT_THRESHOLD, fitted_on: int = 0):
        if _ALL not in layouts:
            raise ValueError(f"a box layout needs an {_ALL!r} entry, got {sorted(layouts)}")
        self.layouts = {str(k): np.asarray(v, dtype=np.float64).reshape(NUM_LANDMARKS, 2) for k, v in layouts.items()}
        for key, layout in self.layouts.items():
            if not np.isfinite(layout).all():
                raise ValueError(f"box layout {key!r} has non-finite values")
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = float(threshold)
        self.fitted_on = int(fitted_on)

    @classmethod
    def fit(cls, frame: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD) -> "BoxLayoutPrior":
        """From annotated rows with a garment box: the mean of each slot's visible points, as
        fractions of the box, per clothes type (and over all rows). ValueError without such rows."""
        xy, visibility = landmarks_of(frame)
        boxes = bboxes_of(frame).astype(np.float64)
        size = boxes[:, 2:] - boxes[:, :2]
        usable = np.isfinite(boxes).all(axis=1) & (size > 1).all(axis=1)
        if not usable.any():
            raise ValueError("no rows with a garment box to fit the landmark box layout on")
        relative = (xy - boxes[:, None, :2]) / np.where(usable[:, None], size, 1.0)[:, None, :]
        relative = np.where(((visibility == VISIBLE) & usable[:, None])[..., None], relative, np.nan)
        types = frame["clothes_type"].fillna(-1).astype(int).to_numpy() if "clothes_type" in frame else np.full(len(frame), -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # slots a type never shows are all-NaN
            overall = np.nanmean(relative, axis=0)
            overall = np.where(np.isnan(overall), 0.5, overall)
            layouts = {_ALL: overall}
            for t in np.unique(types[usable]):
                rows = usable & (types == t)
                if t < 0 or rows.sum() < MIN_ROWS:
                    continue
                mean = np.nanmean(relative[rows], axis=0)
                layouts[str(int(t))] = np.where(np.isnan(mean), overall, mean)
        return cls(layouts, threshold, fitted_on=int(usable.sum()))

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "BoxLayoutPrior":
        return cls(state["layouts"], float(state.get("threshold", DEFAULT_THRESHOLD)), int(state.get("fitted_on", 0)))

    def to_state(self) -> dict[str, Any]:
        """Plain lists and numbers, so the checkpoint loads with weights_only=True."""
        return {"layouts": {k: v.tolist() for k, v in self.layouts.items()}, "threshold": self.threshold, "fitted_on": self.fitted_on}

    def layout_points(self, boxes: np.ndarray, clothes_types: Sequence[Optional[int]]) -> np.ndarray:
        """(N, 8, 2) pixels: each type's layout placed in each (x1, y1, x2, y2) box."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        layouts = np.stack([self.layouts.get(str(t), self.layouts[_ALL]) if t is not None else self.layouts[_ALL] for t in clothes_types])
        return boxes[:, None, :2] + layouts * (boxes[:, None, 2:] - boxes[:, None, :2])

    def place(self, landmarks: np.ndarray, confidence: np.ndarray, boxes: np.ndarray,
              clothes_types: Sequence[Optional[int]]) -> np.ndarray:
        """(N, 8, 2) pixels: points at or above the threshold as predicted, the others pulled
        towards the box layout in proportion to how far below the threshold they are."""
        trust = np.clip(np.asarray(confidence, dtype=np.float64) / self.threshold, 0.0, 1.0)[..., None]
        return trust * np.asarray(landmarks, dtype=np.float64) + (1.0 - trust) * self.layout_points(boxes, clothes_types)


def fit_box_layout(frame: pd.DataFrame) -> tuple[Optional[BoxLayoutPrior], str]:
    """(the layout fitted on ``frame``, or None when it has no garment boxes; a line saying which)."""
    try:
        prior = BoxLayoutPrior.fit(frame)
    except ValueError as exc:
        return None, f"none stored: {exc}"
    return prior, f"fitted on {prior.fitted_on} boxed photos ({len(prior.layouts) - 1} clothes types)"
