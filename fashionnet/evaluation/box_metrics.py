"""Garment box metrics: intersection over union with the annotated box."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from fashionnet.evaluation.metric_inputs import as_boxes, as_numpy


def box_iou(pred_boxes: Any, true_boxes: Any) -> np.ndarray:
    """(N,) intersection over union of two (N, 4) sets of (x1, y1, x2, y2) boxes, row by row;
    NaN where either box has a NaN coordinate."""
    pred = as_numpy(pred_boxes).astype(np.float64).reshape(-1, 4)
    true = as_boxes(true_boxes, len(pred))
    width = np.minimum(pred[:, 2], true[:, 2]) - np.maximum(pred[:, 0], true[:, 0])
    height = np.minimum(pred[:, 3], true[:, 3]) - np.maximum(pred[:, 1], true[:, 1])
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    area = lambda b: np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)  # noqa: E731
    union = area(pred) + area(true) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    iou[~(np.isfinite(pred).all(axis=1) & np.isfinite(true).all(axis=1))] = np.nan
    return iou


def garment_box_iou(pred_boxes: Any, true_boxes: Any, thresholds: Sequence[float] = (0.5, 0.75)) -> dict[str, Any]:
    """How well predicted garment boxes match the annotated ones (both (N, 4) pixels, NaN rows unknown).

    Photos without an annotated box are left out (and counted); a photo with one but no predicted
    box scores IoU 0. Returns {"mean_iou", "iou_at_least_<t>" (share of photos) per threshold,
    "num_photos", "num_without_annotated_box", "num_without_predicted_box"}; NaN rates without photos.
    """
    pred = as_numpy(pred_boxes).astype(np.float64).reshape(-1, 4)
    true = as_boxes(true_boxes, len(pred))
    annotated = np.isfinite(true).all(axis=1)
    predicted = np.isfinite(pred).all(axis=1)
    iou = np.nan_to_num(box_iou(pred, true)[annotated], nan=0.0)
    out: dict[str, Any] = {"mean_iou": float(iou.mean()) if len(iou) else float("nan")}
    for t in thresholds:
        out[f"iou_at_least_{t:g}"] = float((iou >= t).mean()) if len(iou) else float("nan")
    out.update(num_photos=int(annotated.sum()), num_without_annotated_box=int((~annotated).sum()),
               num_without_predicted_box=int((annotated & ~predicted).sum()))
    return out
