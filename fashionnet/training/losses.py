"""FashionNet's losses as small modules (pytorch-metric-learning style).

Each loss returns a scalar tensor and stays finite (a zero that keeps the graph) when a batch has
nothing to learn from, e.g. every label unknown, so mixed-benchmark batches never produce NaN.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import generalized_box_iou_loss

from fashionnet.landmarks import ABSENT, NUM_VISIBILITY_CLASSES, VISIBLE
from fashionnet.training.miners import BatchHardMiner, SemiHardMiner, pairwise_distances

Miner = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def metric_embedding(out: dict) -> torch.Tensor:
    """The vector the metric losses train: the L2-normalised fusion feature. The model's search
    ``embedding`` may append the pooled appearance to it (FashionNetConfig.appearance_weight),
    which the losses leave alone so that it keeps what the pretrained trunk knows."""
    return F.normalize(out["fusion_feature"].float(), dim=1)


def _zero_like_graph(t: torch.Tensor) -> torch.Tensor:
    """A 0 that depends on ``t``, so backward() works and the loss is exactly zero."""
    return t.sum() * 0.0


class LandmarkL2Loss(nn.Module):
    """sum_j || v_j (l'_j - l_j) ||^2 over the 8 landmarks, mean over the batch.

    v_j = 1 only for VISIBLE (0) ground-truth landmarks: occluded, truncated and absent ones add
    nothing (their targets may be NaN). Inputs: predicted and target (B, 8, 2), visibility (B, 8).
    """

    def forward(self, predicted: torch.Tensor, target: torch.Tensor, visibility: torch.Tensor) -> torch.Tensor:
        if predicted.shape != target.shape or visibility.shape != predicted.shape[:2]:
            raise ValueError(f"shape mismatch: predicted {tuple(predicted.shape)}, target {tuple(target.shape)}, visibility {tuple(visibility.shape)}")
        visible = (visibility == VISIBLE).unsqueeze(-1)
        # where(), not multiplication: 0 * NaN (absent targets) would still be NaN
        diff = torch.where(visible, predicted - target.to(predicted.dtype), torch.zeros_like(predicted))
        return diff.pow(2).sum(dim=(1, 2)).mean()


class VisibilityLoss(nn.Module):
    """Cross-entropy over visible / occluded / truncated per landmark; ABSENT (3) slots are ignored.

    Inputs: logits (B, 8, 3), visibility codes (B, 8).
    """

    def forward(self, logits: torch.Tensor, visibility: torch.Tensor) -> torch.Tensor:
        target = visibility.long().reshape(-1)
        if not (target != ABSENT).any():
            return _zero_like_graph(logits)
        return F.cross_entropy(logits.reshape(-1, NUM_VISIBILITY_CLASSES), target, ignore_index=ABSENT)


class CategoryLoss(nn.Module):
    """Cross-entropy over categories; label -1 (unknown) is ignored. Inputs: logits (B, C), labels (B,)."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.long().view(-1)
        if logits.shape[1] == 0 or not (labels >= 0).any():
            return _zero_like_graph(logits)
        return F.cross_entropy(logits, labels, ignore_index=-1)


class AttributeLoss(nn.Module):
    """Binary cross-entropy over attributes labelled 1 (present), -1 (absent), 0 (unknown, masked).

    ``pos_weight`` (A,) scales each attribute's positive term; build it from the training set with
    :meth:`from_labels` (negatives / positives per attribute, as in the paper). The loss is the
    mean over the known (non-zero) labels. Inputs: logits (B, A), labels (B, A).
    """

    def __init__(self, pos_weight: Optional[torch.Tensor] = None):
        super().__init__()
        self.register_buffer("pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32))

    @classmethod
    def from_labels(cls, train_attribute_matrix) -> "AttributeLoss":
        """Weights from a TRAINING-set (N, A) matrix in {1, -1, 0}: pos_weight = #(-1) / #(1).

        Attributes with no positive or no negative example get weight 1 (no evidence to rebalance).
        """
        labels = np.asarray(train_attribute_matrix)
        if labels.ndim != 2:
            raise ValueError(f"expected an (N, A) attribute matrix, got shape {labels.shape}")
        bad = ~np.isin(labels, (-1, 0, 1))
        if bad.any():
            raise ValueError(f"attribute labels must be 1, -1 or 0; found {np.unique(labels[bad])[:5].tolist()}")
        positives = (labels == 1).sum(axis=0).astype(np.float64)
        negatives = (labels == -1).sum(axis=0).astype(np.float64)
        weight = np.ones(labels.shape[1])
        both = (positives > 0) & (negatives > 0)
        weight[both] = negatives[both] / positives[both]
        return cls(torch.from_numpy(weight).float())

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.shape != labels.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} differ in shape")
        known = labels != 0
        if logits.numel() == 0 or not known.any():
            return _zero_like_graph(logits)
        target = (labels == 1).to(logits.dtype)
        per_label = F.binary_cross_entropy_with_logits(logits, target, pos_weight=self.pos_weight, reduction="none")
        return per_label[known].mean()


class TripletLoss(nn.Module):
    """max(0, margin + d(a, p) - d(a, n)) averaged over the triplets a ``miner`` picks in the batch.

    Inputs: embeddings (B, D) (FashionNet's are L2-normalised), item labels (B,). Default miner:
    :class:`~fashionnet.training.miners.BatchHardMiner`.
    """

    def __init__(self, margin: float = 0.2, miner: Optional[Miner] = None):
        super().__init__()
        self.margin = float(margin)
        self.miner = miner if miner is not None else BatchHardMiner()

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        anchors, positives, negatives = self.miner(embeddings, labels)
        if len(anchors) == 0:
            return _zero_like_graph(embeddings)
        dist = pairwise_distances(embeddings)
        return F.relu(self.margin + dist[anchors, positives] - dist[anchors, negatives]).mean()


class BoxLoss(nn.Module):
    """Generalized IoU loss plus ``l1_weight`` x L1 (DETR's 5 : 2 balance) between predicted and target boxes (x1, y1, x2, y2)
    in [0, 1] of the input, mean over the samples with ``has_bbox``; zero when none has one or the
    model predicts no box. Inputs: predicted (B, 4) or None, target (B, 4), has_bbox (B,)."""

    def __init__(self, l1_weight: float = 2.5):
        super().__init__()
        self.l1_weight = float(l1_weight)

    def forward(self, predicted: Optional[torch.Tensor], target: Optional[torch.Tensor], has_bbox: Optional[torch.Tensor],
                anchor: torch.Tensor) -> torch.Tensor:
        if predicted is None or target is None or has_bbox is None or not has_bbox.bool().any():
            return _zero_like_graph(anchor if predicted is None else predicted)
        keep = has_bbox.bool().view(-1).to(predicted.device)
        p, t = predicted[keep].float(), target[keep].to(predicted.device, torch.float32)
        giou = generalized_box_iou_loss(p, t, reduction="mean")
        return giou + self.l1_weight * (p - t).abs().sum(dim=1).mean()


# Landmark L2 on [0, 1] coordinates is ~1e-2 once training gets going; this brings it to the scale of
# the other terms so the paper's stage weights mean what they say.
LANDMARK_LOSS_SCALE = 10.0


class FashionNetLosses(nn.Module):
    """The five loss terms of the paper and the garment box's, each returned separately so progress
    bars can show them."""

    def __init__(self, attribute_loss: AttributeLoss, margin: float, miner: str):
        super().__init__()
        self.landmark = LandmarkL2Loss()
        self.visibility = VisibilityLoss()
        self.category = CategoryLoss()
        self.attribute = attribute_loss
        self.triplet = TripletLoss(margin, BatchHardMiner() if miner == "batch_hard" else SemiHardMiner(margin))
        self.box = BoxLoss()

    def forward(self, out: dict, batch: dict) -> dict[str, torch.Tensor]:
        return {
            "landmark": LANDMARK_LOSS_SCALE * self.landmark(out["landmarks"].float(), batch["landmarks"], batch["visibility"]),
            "visibility": self.visibility(out["visibility_logits"].float(), batch["visibility"]),
            "category": self.category(out["category_logits"].float(), batch["category"]),
            "attribute": self.attribute(out["attribute_logits"].float(), batch["attributes"]),
            "triplet": self.triplet(metric_embedding(out), batch["item"]),
            "box": self.box(out.get("box"), batch.get("bbox"), batch.get("has_bbox"), out["embedding"]),
        }
