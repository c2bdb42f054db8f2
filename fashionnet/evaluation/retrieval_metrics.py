"""Retrieval metrics: top-k hit rate and mAP@R, and both from embeddings.

Retrieval follows the DeepFashion protocol (Liu et al., CVPR 2016): a query is a hit at k when ANY
gallery image of its item is among its k nearest gallery images, and top-k accuracy is
hits / queries. It is not true positives / relevant images, a different number one public toolkit
reports by mistake.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from fashionnet.evaluation.metric_inputs import as_numpy, check_ks

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20, 30, 40, 50)

# Similarity blocks of retrieval_metrics hold at most this many floats (256 MB as float32).
_MAX_BLOCK_ELEMENTS = 64 * 1024 * 1024


def _ranked_items(ranked: Any, gallery_item_ids: Any | None) -> np.ndarray:
    """(Q, K) item ids of the ranked results; positions with a negative index (FAISS -1) get None."""
    ranked = as_numpy(ranked)
    if ranked.ndim != 2:
        raise ValueError(f"ranked results must be 2-D (queries, K), got shape {ranked.shape}")
    if gallery_item_ids is None:
        return ranked
    if not np.issubdtype(ranked.dtype, np.integer):
        raise ValueError(f"ranked gallery indices must be integers when gallery_item_ids is given, got {ranked.dtype}")
    gallery = as_numpy(gallery_item_ids)
    if ranked.size and ranked.max() >= len(gallery):
        raise ValueError(f"ranked index {ranked.max()} is out of range for a gallery of {len(gallery)} images")
    items = gallery.astype(object)[np.clip(ranked, 0, None)]
    items[ranked < 0] = None  # a missing neighbour matches no item
    return items


def _relevance(ranked: Any, query_item_ids: Any, gallery_item_ids: Any | None) -> np.ndarray:
    """(Q, K) boolean: is the result at each rank an image of the query's item."""
    items = _ranked_items(ranked, gallery_item_ids)
    queries = as_numpy(query_item_ids)
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
    ks = check_ks(ks, relevant.shape[1])
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
        gallery = as_numpy(gallery_item_ids).astype(object)
        counts: dict[Any, int] = {}
        for item in gallery:
            counts[item] = counts.get(item, 0) + 1
        r = np.array([counts.get(q, 0) for q in as_numpy(query_item_ids).astype(object)], dtype=np.int64)
    else:
        r = as_numpy(num_relevant).astype(np.int64)
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
    queries = np.ascontiguousarray(as_numpy(query_emb), dtype=np.float32)
    gallery = np.ascontiguousarray(as_numpy(gallery_emb), dtype=np.float32)
    query_items = as_numpy(query_items)
    gallery_items = as_numpy(gallery_items)
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"embeddings must be (N, D) with the same D, got {queries.shape} and {gallery.shape}")
    if len(query_items) != len(queries) or len(gallery_items) != len(gallery):
        raise ValueError("need one item id per embedding row")
    if exclude_self and len(queries) != len(gallery):
        raise ValueError("exclude_self needs the query set to be the gallery (same rows)")
    ks = check_ks(ks)

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
