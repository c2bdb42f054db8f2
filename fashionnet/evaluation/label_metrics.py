"""Label metrics: top-k category accuracy and DeepFashion attribute recall@k."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from fashionnet.evaluation.metric_inputs import as_numpy, check_ks


def category_accuracy(logits_or_pred: Any, labels: Any, ks: Sequence[int] = (1, 3, 5)) -> dict[int, float]:
    """Top-k category accuracy. Labels < 0 (unknown category) are left out.

    ``logits_or_pred`` is (N, C) scores, or (N,) predicted labels (then only k = 1 is reported).
    Returns {k: accuracy}; NaN where no image has a known label.
    """
    scores = as_numpy(logits_or_pred)
    labels = as_numpy(labels).astype(np.int64)
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} predictions for {len(labels)} labels")
    known = labels >= 0
    if scores.ndim == 1:
        if not known.any():
            return {1: float("nan")}
        return {1: float(np.mean(scores[known].astype(np.int64) == labels[known]))}
    ks = check_ks(ks, scores.shape[1])
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
    scores = as_numpy(scores).astype(np.float64)
    labels = as_numpy(labels)
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
