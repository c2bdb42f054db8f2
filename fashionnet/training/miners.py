"""In-batch triplet miners for P x K batches (P items, K images each).

A miner takes the batch's embeddings (B, D) and item labels (B,) and returns three LongTensors
(anchor, positive, negative) of batch indices. Mining runs without gradients; the loss recomputes
distances on the mined triplets.
"""

from __future__ import annotations

import torch


def pairwise_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """(B, B) Euclidean distances, safe to backpropagate through (no sqrt(0) gradient)."""
    squared = (embeddings.unsqueeze(1) - embeddings.unsqueeze(0)).pow(2).sum(dim=-1)
    return squared.clamp_min(1e-12).sqrt()


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive (same label, not itself) and negative (other label) pair masks."""
    labels = labels.view(-1)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def _check(embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    if embeddings.ndim != 2 or labels.ndim != 1 or len(labels) != len(embeddings):
        raise ValueError(f"expected embeddings (B, D) and labels (B,), got {tuple(embeddings.shape)} and {tuple(labels.shape)}")


class BatchHardMiner:
    """For each anchor: its farthest positive and its nearest negative (Hermans et al. 2017).

    Anchors without any positive or any negative in the batch are skipped.
    """

    @torch.no_grad()
    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _check(embeddings, labels)
        dist = pairwise_distances(embeddings.detach().float())
        positive, negative = _masks(labels)
        hardest_positive = dist.masked_fill(~positive, float("-inf")).argmax(dim=1)
        hardest_negative = dist.masked_fill(~negative, float("inf")).argmin(dim=1)
        anchors = torch.nonzero(positive.any(dim=1) & negative.any(dim=1)).view(-1)
        return anchors, hardest_positive[anchors], hardest_negative[anchors]


class SemiHardMiner:
    """For each anchor-positive pair: the nearest negative that is still farther than the positive
    and within ``margin`` of it (d_ap < d_an < d_ap + margin; FaceNet, Schroff et al. 2015).

    Pairs with no such negative are dropped (their triplet loss is zero, or they are "hard").
    """

    def __init__(self, margin: float = 0.2):
        self.margin = float(margin)

    @torch.no_grad()
    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _check(embeddings, labels)
        dist = pairwise_distances(embeddings.detach().float())
        positive, negative = _masks(labels)
        anchors, positives = torch.nonzero(positive, as_tuple=True)
        d_ap = dist[anchors, positives].unsqueeze(1)  # (P, 1)
        d_an = dist[anchors]  # (P, B)
        semi_hard = negative[anchors] & (d_an > d_ap) & (d_an < d_ap + self.margin)
        nearest = d_an.masked_fill(~semi_hard, float("inf")).argmin(dim=1)
        keep = semi_hard.any(dim=1)
        return anchors[keep], positives[keep], nearest[keep]
