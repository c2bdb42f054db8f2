"""Retrieval-time improvements that need no training, each a function of embeddings.

* flip averaging: a photo and its mirror image describe the same garment, so their embeddings are
  averaged (the caller embeds both; :func:`average_views`);
* item aggregation: the gallery views of one item answer as one item, by the mean of their
  embeddings (:func:`item_centroids`) or by their best-matching view (:func:`best_view_ranking`,
  what the page and ``indexer query`` list: each item once, at its best view's score).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def average_views(*views: np.ndarray) -> np.ndarray:
    """L2-normalised mean of several (N, D) embeddings of the same N photos (e.g. photo and mirror)."""
    if not views:
        raise ValueError("need at least one view")
    shapes = {np.shape(v) for v in views}
    if len(shapes) != 1:
        raise ValueError(f"views must have one shape, got {sorted(shapes)}")
    return _unit_rows(np.mean([_unit_rows(v) for v in views], axis=0))


def best_view_ranking(queries: np.ndarray, gallery: np.ndarray, items: Any, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """(unique item ids, (Q, depth) indices into them, best first): the items ranked by the score
    of their best-matching gallery view, so each item appears once."""
    q, g = _unit_rows(queries), _unit_rows(gallery)
    ids, inverse = np.unique(np.asarray(items), return_inverse=True)
    scores = np.full((len(q), len(ids)), -np.inf, dtype=np.float32)
    np.maximum.at(scores, (np.arange(len(q))[:, None], inverse[None, :]), q @ g.T)
    return ids, np.argsort(-scores, axis=1, kind="stable")[:, :depth]


def item_centroids(gallery: np.ndarray, items: Any) -> tuple[np.ndarray, np.ndarray]:
    """(unique item ids, their L2-normalised mean embeddings): one gallery row per item."""
    items = np.asarray(items)
    ids, inverse = np.unique(items, return_inverse=True)
    sums = np.zeros((len(ids), np.shape(gallery)[1]), dtype=np.float64)
    np.add.at(sums, inverse, _unit_rows(gallery))
    return ids, _unit_rows(sums)
