"""Landmark metrics: NE (normalised error), PDL (share detected within a distance), the mean-layout
floor NE must beat, and NE split by the model's own confidence."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from fashionnet.evaluation.metric_inputs import as_boxes, as_numpy
from fashionnet.landmarks import LANDMARK_NAMES, NUM_LANDMARKS, VISIBLE

# Reference image side of the PDL threshold in the seed: 35 px on 512 x 512 images.
PDL_THRESHOLD_PX = 35.0
PDL_REFERENCE_SIZE = 512.0


def _landmark_inputs(pred_xy: Any, true_xy: Any, visibility: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred = as_numpy(pred_xy).astype(np.float64)
    true = as_numpy(true_xy).astype(np.float64)
    vis = as_numpy(visibility).astype(np.int64)
    if pred.ndim == 2:  # one image
        pred, true, vis = pred[None], true[None], vis[None]
    expected = (len(pred), NUM_LANDMARKS, 2)
    if pred.shape != expected or true.shape != expected or vis.shape != expected[:2]:
        raise ValueError(
            f"need (N, {NUM_LANDMARKS}, 2) predicted and true coordinates and (N, {NUM_LANDMARKS}) visibility, "
            f"got {pred.shape}, {true.shape}, {vis.shape}"
        )
    visible = vis == VISIBLE
    if not np.isfinite(true[visible]).all():
        raise ValueError("a landmark marked visible has a NaN/inf ground-truth coordinate")
    if not np.isfinite(pred[visible]).all():
        raise ValueError("a predicted coordinate of a visible landmark is NaN/inf")
    return pred, true, visible


def _image_sizes(image_sizes: Any, n: int) -> np.ndarray:
    """(N, 2) width, height from (N, 2), (2,) or a scalar side."""
    sizes = as_numpy(image_sizes).astype(np.float64)
    sizes = np.broadcast_to(sizes, (n, 2)) if sizes.ndim < 2 else sizes
    if sizes.shape != (n, 2) or (sizes <= 0).any():
        raise ValueError(f"image_sizes must be positive (width, height) per image, shape (N, 2); got {sizes.shape}")
    return sizes


def _summarise(values: np.ndarray, visible: np.ndarray) -> dict[str, Any]:
    """Per-landmark mean over visible entries (NaN with none) and the mean over all visible ones."""
    per_landmark = {}
    for slot, name in enumerate(LANDMARK_NAMES):
        column = values[visible[:, slot], slot]
        per_landmark[name] = float(column.mean()) if len(column) else float("nan")
    count = int(visible.sum())
    average = float(values[visible].mean()) if count else float("nan")
    return {"per_landmark": per_landmark, "average": average, "num_visible": count}


def normalized_error(pred_xy: Any, true_xy: Any, visibility: Any, image_sizes: Any) -> dict[str, Any]:
    """NE: mean distance between predicted and true VISIBLE landmarks, x / width and y / height.

    ``pred_xy``, ``true_xy``: (N, 8, 2) pixel coordinates in the slot order of LANDMARK_NAMES;
    ``visibility``: (N, 8) codes (only 0 = visible counts); ``image_sizes``: (N, 2) width, height,
    or one (width, height) for all (pass (1, 1) for coordinates already in [0, 1]).
    Returns {"per_landmark": {name: NE or NaN}, "average": NE over all visible landmarks,
    "num_visible": int}.
    """
    pred, true, visible = _landmark_inputs(pred_xy, true_xy, visibility)
    sizes = _image_sizes(image_sizes, len(pred))[:, None, :]
    with np.errstate(invalid="ignore"):  # NaN slots of invisible landmarks are masked out below
        dist = np.linalg.norm((pred - true) / sizes, axis=-1)
    return _summarise(dist, visible)


def mean_layout(true_xy: Any, visibility: Any, image_sizes: Any, groups: Any) -> np.ndarray:
    """The constant answer the landmark NE must beat: for each row, the mean layout of its group.

    Each group's (e.g. clothes type's) layout is the mean of its rows' VISIBLE landmarks, x / width
    and y / height, slot by slot; rows get it back in their own pixels. A slot no row of the group
    shows takes the mean over all rows. Returns (N, 8, 2) pixel coordinates, for :func:`normalized_error`.
    """
    true = np.asarray(true_xy, dtype=np.float64)
    visible = np.asarray(visibility) == VISIBLE
    sizes = _image_sizes(image_sizes, len(true))[:, None, :]
    groups = np.asarray(groups)
    relative = np.where(visible[..., None], true / sizes, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slots fall back below
        overall = np.nanmean(relative, axis=0)
        layout = np.empty_like(relative)
        for group in np.unique(groups):
            rows = groups == group
            layout[rows] = np.where(np.isnan(np.nanmean(relative[rows], axis=0)), overall, np.nanmean(relative[rows], axis=0))
    return np.nan_to_num(layout, nan=0.5) * sizes


def mean_layout_in_box(true_xy: Any, visibility: Any, boxes: Any, groups: Any, place_in: Any | None = None) -> np.ndarray:
    """Like :func:`mean_layout`, but relative to the garment box instead of the photo.

    Each group's (e.g. clothes type's) layout is the mean of its rows' VISIBLE landmarks as
    fractions of the row's ``boxes`` (x1, y1, x2, y2): ((x - x1) / (x2 - x1), (y - y1) / (y2 - y1)),
    slot by slot, over the rows whose box is known (finite, wider and taller than 0). A slot no such
    row of the group shows takes the mean over all of them, and then the box's centre. Each row gets
    its group's layout placed in its ``place_in`` box (default: ``boxes``), in pixels: (N, 8, 2),
    NaN for rows without that box.
    """
    true = np.asarray(true_xy, dtype=np.float64)
    visible = np.asarray(visibility) == VISIBLE
    fit = as_boxes(boxes, len(true))
    place = fit if place_in is None else as_boxes(place_in, len(true))
    groups = np.asarray(groups)
    size = fit[:, 2:] - fit[:, :2]
    usable = np.isfinite(fit).all(axis=1) & (size > 0).all(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = (true - fit[:, None, :2]) / size[:, None, :]
    relative = np.where((visible & usable[:, None])[..., None], relative, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slots fall back below
        overall = np.nan_to_num(np.nanmean(relative, axis=0), nan=0.5)
        layout = np.empty_like(relative)
        for group in np.unique(groups):
            rows = groups == group
            mean = np.nanmean(relative[rows], axis=0)
            layout[rows] = np.where(np.isnan(mean), overall, mean)
    return place[:, None, :2] + layout * (place[:, None, 2:] - place[:, None, :2])


def normalized_error_by_confidence(pred_xy: Any, true_xy: Any, visibility: Any, image_sizes: Any, sure: Any) -> dict[str, Any]:
    """:func:`normalized_error` of the points the model marked sure and of those it marked unsure.

    ``sure``: (N, 8) booleans, the model's own flag per predicted point. Returns {"ne_sure",
    "ne_unsure" (NaN where no visible point is in that group), "num_sure", "num_unsure" (visible
    ground-truth points), "sure_share" (num_sure over all visible points)}.
    """
    vis = as_numpy(visibility).astype(np.int64)
    sure = as_numpy(sure).astype(bool).reshape(vis.shape)
    # hiding a point from normalized_error: any code other than VISIBLE
    hidden = VISIBLE + 1
    on_sure = normalized_error(pred_xy, true_xy, np.where(sure, vis, hidden), image_sizes)
    on_unsure = normalized_error(pred_xy, true_xy, np.where(sure, hidden, vis), image_sizes)
    total = on_sure["num_visible"] + on_unsure["num_visible"]
    return {"ne_sure": on_sure["average"], "ne_unsure": on_unsure["average"], "num_sure": on_sure["num_visible"],
            "num_unsure": on_unsure["num_visible"], "sure_share": on_sure["num_visible"] / total if total else float("nan")}


def pdl(
    pred_xy: Any,
    true_xy: Any,
    visibility: Any,
    threshold_px: float = PDL_THRESHOLD_PX,
    image_sizes: Any | None = None,
    reference_size: float | None = None,
) -> dict[str, Any]:
    """PDL: fraction of visible ground-truth landmarks predicted within ``threshold_px`` pixels.

    Distances are in the pixels of the given coordinates. With ``reference_size`` (e.g. 512, the
    seed's image side) and ``image_sizes`` (N, 2) width, height, the threshold is read on the image
    rescaled so its long side is ``reference_size``: distance * reference_size / max(width, height).
    Returns {"per_landmark": {name: fraction or NaN}, "average": fraction, "num_visible": int}.
    """
    pred, true, visible = _landmark_inputs(pred_xy, true_xy, visibility)
    with np.errstate(invalid="ignore"):
        dist = np.linalg.norm(pred - true, axis=-1)
    if reference_size is not None:
        if image_sizes is None:
            raise ValueError("reference_size needs image_sizes to rescale distances")
        long_side = _image_sizes(image_sizes, len(pred)).max(axis=1)
        dist = dist * (float(reference_size) / long_side)[:, None]
    detected = (dist <= float(threshold_px)).astype(np.float64)
    return _summarise(detected, visible)
