"""Evaluation metrics: retrieval (top-k hit rate, mAP@R), landmarks (NE, PDL), garment boxes (IoU),
category, attributes.

Every function takes numpy arrays or torch tensors and returns plain Python floats / dicts.
Rates are fractions in [0, 1] (multiply by 100 for the percentages papers print).

Retrieval follows the DeepFashion protocol (Liu et al., CVPR 2016): a query is a hit at k when ANY
gallery image of its item is among its k nearest gallery images, and top-k accuracy is
hits / queries. It is not true positives / relevant images, a different number one public toolkit
reports by mistake.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from fashionnet.landmarks import LANDMARK_NAMES, NUM_LANDMARKS, VISIBLE

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20, 30, 40, 50)

# Reference image side of the PDL threshold in the seed: 35 px on 512 x 512 images.
PDL_THRESHOLD_PX = 35.0
PDL_REFERENCE_SIZE = 512.0

# Similarity blocks of retrieval_metrics hold at most this many floats (256 MB as float32).
_MAX_BLOCK_ELEMENTS = 64 * 1024 * 1024


def _to_numpy(x: Any) -> np.ndarray:
    """A numpy view of a numpy array, torch tensor or sequence."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_ks(ks: Iterable[int], available: int | None = None) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if available is not None and max(ks) > available:
        raise ValueError(f"k={max(ks)} asked for but only {available} ranked results per query were given")
    return ks


# --------------------------------------------------------------------------------------- retrieval


def _ranked_items(ranked: Any, gallery_item_ids: Any | None) -> np.ndarray:
    """(Q, K) item ids of the ranked results; positions with a negative index (FAISS -1) get None."""
    ranked = _to_numpy(ranked)
    if ranked.ndim != 2:
        raise ValueError(f"ranked results must be 2-D (queries, K), got shape {ranked.shape}")
    if gallery_item_ids is None:
        return ranked
    if not np.issubdtype(ranked.dtype, np.integer):
        raise ValueError(f"ranked gallery indices must be integers when gallery_item_ids is given, got {ranked.dtype}")
    gallery = _to_numpy(gallery_item_ids)
    if ranked.size and ranked.max() >= len(gallery):
        raise ValueError(f"ranked index {ranked.max()} is out of range for a gallery of {len(gallery)} images")
    items = gallery.astype(object)[np.clip(ranked, 0, None)]
    items[ranked < 0] = None  # a missing neighbour matches no item
    return items


def _relevance(ranked: Any, query_item_ids: Any, gallery_item_ids: Any | None) -> np.ndarray:
    """(Q, K) boolean: is the result at each rank an image of the query's item."""
    items = _ranked_items(ranked, gallery_item_ids)
    queries = _to_numpy(query_item_ids)
    if queries.ndim != 1 or len(queries) != len(items):
        raise ValueError(f"need one item id per query: {len(items)} ranked rows, query ids of shape {queries.shape}")
    if items.dtype == object or queries.dtype == object:
        return np.asarray(items.astype(object) == queries.astype(object)[:, None], dtype=bool)
    return items == queries[:, None]


def topk_hit_rate(
    ranked: Any,
    query_item_ids: Any,
    ks: Sequence[int] = DEFAULT_KS,
    gallery_item_ids: Any | None = None,
) -> dict[int, float]:
    """Top-k accuracy of the DeepFashion protocol: hits / queries for each k.

    ``ranked`` is (Q, K), best first: either the item ids of the retrieved gallery images, or, when
    ``gallery_item_ids`` is given, indices into it (negative indices, FAISS's "no result", are misses).
    A query is a hit at k if any of its first k results shows its own item. Every query counts in the
    denominator, also one whose item has no gallery image.
    """
    relevant = _relevance(ranked, query_item_ids, gallery_item_ids)
    ks = _check_ks(ks, relevant.shape[1])
    if len(relevant) == 0:
        raise ValueError("no queries given")
    num_results = relevant.shape[1]
    # Rank of the first hit per query; num_results where there is none.
    first_hit = np.where(relevant.any(axis=1), relevant.argmax(axis=1), num_results)
    return {k: float(np.mean(first_hit < k)) for k in ks}


def map_at_r(
    ranked: Any,
    query_item_ids: Any,
    gallery_item_ids: Any,
    num_relevant: Any | None = None,
) -> float:
    """mAP@R (Musgrave et al., "A Metric Learning Reality Check", 2020).

    ``ranked`` (Q, K) holds indices into ``gallery_item_ids``, best first. For a query with R relevant
    gallery images, AP@R = (1/R) * sum over ranks i <= R of precision@i * [result i is relevant].
    R is counted from ``gallery_item_ids`` unless ``num_relevant`` (Q,) is given (for instance when the
    query's own image was excluded from its results). Queries with R = 0 are skipped; NaN if all are.
    K must be at least the largest R.
    """
    relevant = _relevance(ranked, query_item_ids, gallery_item_ids)
    if num_relevant is None:
        gallery = _to_numpy(gallery_item_ids).astype(object)
        counts: dict[Any, int] = {}
        for item in gallery:
            counts[item] = counts.get(item, 0) + 1
        r = np.array([counts.get(q, 0) for q in _to_numpy(query_item_ids).astype(object)], dtype=np.int64)
    else:
        r = _to_numpy(num_relevant).astype(np.int64)
        if r.shape != (len(relevant),):
            raise ValueError(f"num_relevant must have one count per query ({len(relevant)}), got shape {r.shape}")
    if r.size and r.max() > relevant.shape[1]:
        raise ValueError(f"mAP@R needs the first R results; R goes up to {r.max()} but only {relevant.shape[1]} were given")
    ranks = np.arange(1, relevant.shape[1] + 1)
    within_r = ranks[None, :] <= r[:, None]
    hits = relevant & within_r
    precision_at_i = np.cumsum(hits, axis=1) / ranks[None, :]
    has_relevant = r > 0
    if not has_relevant.any():
        return float("nan")
    ap = (precision_at_i * hits).sum(axis=1)[has_relevant] / r[has_relevant]
    return float(ap.mean())


def _top_k_by_inner_product(
    queries: np.ndarray, gallery: np.ndarray, k: int, exclude_self: bool, show_progress: bool
) -> np.ndarray:
    """(Q, k) gallery indices of the k largest inner products per query, computed in row blocks."""
    block = max(1, min(4096, _MAX_BLOCK_ELEMENTS // max(1, len(gallery))))
    out = np.empty((len(queries), k), dtype=np.int64)
    starts = range(0, len(queries), block)
    for start in tqdm(starts, desc="ranking gallery", unit="block", disable=not show_progress or len(starts) < 2):
        sims = queries[start : start + block] @ gallery.T
        if exclude_self:
            rows = np.arange(len(sims))
            sims[rows, start + rows] = -np.inf
        if k < sims.shape[1]:
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(sims.shape[1]), sims.shape).copy()
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        out[start : start + block] = np.take_along_axis(top, order, axis=1)
    return out


def retrieval_metrics(
    query_emb: Any,
    query_items: Any,
    gallery_emb: Any,
    gallery_items: Any,
    ks: Sequence[int] = DEFAULT_KS,
    exclude_self: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Rank the gallery for each query by inner product and return top-k hit rates and mAP@R.

    Embeddings are expected L2-normalised (inner product = cosine). ``exclude_self=True`` is for a
    query set that IS the gallery (same rows, same order): each query's own image is left out of
    its results and out of its relevant count. Similarities are computed in blocks of queries, so
    galleries of any size fit in memory.

    Returns {"top_k": {k: rate}, "map_at_r": float, "num_queries": Q, "num_gallery": G}.
    """
    queries = np.ascontiguousarray(_to_numpy(query_emb), dtype=np.float32)
    gallery = np.ascontiguousarray(_to_numpy(gallery_emb), dtype=np.float32)
    query_items = _to_numpy(query_items)
    gallery_items = _to_numpy(gallery_items)
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"embeddings must be (N, D) with the same D, got {queries.shape} and {gallery.shape}")
    if len(query_items) != len(queries) or len(gallery_items) != len(gallery):
        raise ValueError("need one item id per embedding row")
    if exclude_self and len(queries) != len(gallery):
        raise ValueError("exclude_self needs the query set to be the gallery (same rows)")
    ks = _check_ks(ks)

    gallery_objects = gallery_items.astype(object)
    counts: dict[Any, int] = {}
    for item in gallery_objects:
        counts[item] = counts.get(item, 0) + 1
    num_relevant = np.array([counts.get(q, 0) for q in query_items.astype(object)], dtype=np.int64)
    if exclude_self:
        num_relevant -= 1  # the query's own image is not a result
    available = len(gallery) - (1 if exclude_self else 0)
    depth = min(available, max(max(ks), int(num_relevant.max(initial=0))))
    if depth < max(ks):
        raise ValueError(f"k={max(ks)} asked for but the gallery offers only {available} results per query")

    ranked = _top_k_by_inner_product(queries, gallery, depth, exclude_self, show_progress)
    return {
        "top_k": topk_hit_rate(ranked, query_items, ks, gallery_item_ids=gallery_items),
        "map_at_r": map_at_r(ranked, query_items, gallery_items, num_relevant=num_relevant),
        "num_queries": int(len(queries)),
        "num_gallery": int(len(gallery)),
    }


# --------------------------------------------------------------------------------------- landmarks


def _landmark_inputs(pred_xy: Any, true_xy: Any, visibility: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred = _to_numpy(pred_xy).astype(np.float64)
    true = _to_numpy(true_xy).astype(np.float64)
    vis = _to_numpy(visibility).astype(np.int64)
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
    sizes = _to_numpy(image_sizes).astype(np.float64)
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


def _boxes(boxes: Any, n: int) -> np.ndarray:
    out = _to_numpy(boxes).astype(np.float64).reshape(-1, 4)
    if len(out) != n:
        raise ValueError(f"need one (x1, y1, x2, y2) box per image ({n}), got {len(out)}")
    return out


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
    fit = _boxes(boxes, len(true))
    place = fit if place_in is None else _boxes(place_in, len(true))
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


def box_iou(pred_boxes: Any, true_boxes: Any) -> np.ndarray:
    """(N,) intersection over union of two (N, 4) sets of (x1, y1, x2, y2) boxes, row by row;
    NaN where either box has a NaN coordinate."""
    pred = _to_numpy(pred_boxes).astype(np.float64).reshape(-1, 4)
    true = _boxes(true_boxes, len(pred))
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
    pred = _to_numpy(pred_boxes).astype(np.float64).reshape(-1, 4)
    true = _boxes(true_boxes, len(pred))
    annotated = np.isfinite(true).all(axis=1)
    predicted = np.isfinite(pred).all(axis=1)
    iou = np.nan_to_num(box_iou(pred, true)[annotated], nan=0.0)
    out: dict[str, Any] = {"mean_iou": float(iou.mean()) if len(iou) else float("nan")}
    for t in thresholds:
        out[f"iou_at_least_{t:g}"] = float((iou >= t).mean()) if len(iou) else float("nan")
    out.update(num_photos=int(annotated.sum()), num_without_annotated_box=int((~annotated).sum()),
               num_without_predicted_box=int((annotated & ~predicted).sum()))
    return out


def normalized_error_by_confidence(pred_xy: Any, true_xy: Any, visibility: Any, image_sizes: Any, sure: Any) -> dict[str, Any]:
    """:func:`normalized_error` of the points the model marked sure and of those it marked unsure.

    ``sure``: (N, 8) booleans, the model's own flag per predicted point. Returns {"ne_sure",
    "ne_unsure" (NaN where no visible point is in that group), "num_sure", "num_unsure" (visible
    ground-truth points), "sure_share" (num_sure over all visible points)}.
    """
    vis = _to_numpy(visibility).astype(np.int64)
    sure = _to_numpy(sure).astype(bool).reshape(vis.shape)
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


# --------------------------------------------------------------------------- category and attributes


def category_accuracy(logits_or_pred: Any, labels: Any, ks: Sequence[int] = (1, 3, 5)) -> dict[int, float]:
    """Top-k category accuracy. Labels < 0 (unknown category) are left out.

    ``logits_or_pred`` is (N, C) scores, or (N,) predicted labels (then only k = 1 is reported).
    Returns {k: accuracy}; NaN where no image has a known label.
    """
    scores = _to_numpy(logits_or_pred)
    labels = _to_numpy(labels).astype(np.int64)
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} predictions for {len(labels)} labels")
    known = labels >= 0
    if scores.ndim == 1:
        if not known.any():
            return {1: float("nan")}
        return {1: float(np.mean(scores[known].astype(np.int64) == labels[known]))}
    ks = _check_ks(ks, scores.shape[1])
    if not known.any():
        return {k: float("nan") for k in ks}
    scores, labels = scores[known].astype(np.float64), labels[known]
    if labels.max() >= scores.shape[1]:
        raise ValueError(f"label {labels.max()} out of range for {scores.shape[1]} classes")
    # Rank of the true class = number of classes scored strictly higher (ties count for the truth).
    true_score = scores[np.arange(len(labels)), labels]
    rank = (scores > true_score[:, None]).sum(axis=1)
    return {k: float(np.mean(rank < k)) for k in ks}


def attribute_recall_at_k(scores: Any, labels: Any, k: int = 5) -> float:
    """DeepFashion attribute recall@k: per image, positives among its k top-scored attributes / positives.

    ``scores`` (N, A); ``labels`` (N, A) in {1 present, -1 absent, 0 unknown}. Averaged over the
    images that have at least one positive attribute; NaN if none has.
    """
    scores = _to_numpy(scores).astype(np.float64)
    labels = _to_numpy(labels)
    if scores.shape != labels.shape or scores.ndim != 2:
        raise ValueError(f"scores and labels must both be (N, A), got {scores.shape} and {labels.shape}")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must be in 1..{scores.shape[1]}, got {k}")
    positive = labels == 1
    num_positive = positive.sum(axis=1)
    has_positive = num_positive > 0
    if not has_positive.any():
        return float("nan")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    found = np.take_along_axis(positive, top, axis=1).sum(axis=1)
    return float(np.mean(found[has_positive] / num_positive[has_positive]))
