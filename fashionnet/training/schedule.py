"""The paper's iterative loss weighting, and a guard against landmark collapse.

FashionNet trains in stages: a landmark-heavy stage (the landmark branch must be good before its
points feed the pooling layer), then a stage with equal weights, repeated for some rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

LOSS_TERMS = ("landmark", "visibility", "category", "attribute", "triplet", "box")


@dataclass
class StageWeights:
    landmark: float
    visibility: float
    category: float
    attribute: float
    triplet: float
    # the garment box (losses.BoxLoss); a default so five positional weights still make a stage
    box: float = 1.0

    def as_dict(self) -> dict[str, float]:
        return {t: float(getattr(self, t)) for t in LOSS_TERMS}


@dataclass
class IterativeSchedule:
    """Epoch -> stage name, loss weights and whether the pooling layer reads ground-truth landmarks.

    One round is ``landmark_epochs`` of the landmark stage then ``joint_epochs`` of the joint stage.
    Pooling uses ground-truth landmarks for the first ``gt_pooling_epochs`` epochs, predicted ones after.
    """

    rounds: int = 1
    landmark_epochs: int = 1
    joint_epochs: int = 1
    gt_pooling_epochs: int = 0
    landmark_stage: StageWeights = field(default_factory=lambda: StageWeights(1.0, 1.0, 0.1, 0.1, 0.1, 1.0))
    joint_stage: StageWeights = field(default_factory=lambda: StageWeights(1.0, 1.0, 1.0, 1.0, 1.0, 1.0))

    @property
    def total_epochs(self) -> int:
        return self.rounds * (self.landmark_epochs + self.joint_epochs)

    def stage(self, epoch: int) -> str:
        round_len = self.landmark_epochs + self.joint_epochs
        return "landmark" if epoch % round_len < self.landmark_epochs else "joint"

    def weights(self, epoch: int) -> dict[str, float]:
        return (self.landmark_stage if self.stage(epoch) == "landmark" else self.joint_stage).as_dict()

    def pool_on_ground_truth(self, epoch: int) -> bool:
        return epoch < self.gt_pooling_epochs


class LandmarkCollapseError(RuntimeError):
    """Training stopped because all predicted landmarks froze in one place."""


class LandmarkCollapseGuard:
    """Detects a known failure of landmark training: every predicted point of every image frozen at one spot.

    Each check measures the spread of the predicted points, across the 8 slots of an image and across
    the images of a batch. Below ``min_spread`` (in normalised image units) for ``patience``
    consecutive checks after ``warmup`` steps, it raises LandmarkCollapseError.
    """

    def __init__(self, min_spread: float = 0.01, patience: int = 50, warmup: int = 20):
        self.min_spread = min_spread
        self.patience = patience
        self.warmup = warmup
        self.steps = 0
        self.low_streak = 0

    @staticmethod
    def spread(pred_landmarks: torch.Tensor) -> float:
        """Mean std of predicted (x, y) over the slots of each image and over the batch."""
        p = pred_landmarks.detach().float()
        within = p.std(dim=1).mean().item() if p.shape[1] > 1 else 0.0
        across = p.std(dim=0).mean().item() if p.shape[0] > 1 else within
        return max(within, across)

    def check(self, pred_landmarks: torch.Tensor) -> float:
        s = self.spread(pred_landmarks)
        self.steps += 1
        if self.steps <= self.warmup:
            return s
        self.low_streak = self.low_streak + 1 if s < self.min_spread else 0
        if self.low_streak >= self.patience:
            raise LandmarkCollapseError(
                f"landmark collapse: for {self.low_streak} consecutive steps all predicted landmarks sat within "
                f"{s:.4f} (normalised units) of one another, below --collapse-min-spread {self.min_spread}. "
                "The landmark branch has stopped learning. Lower the learning rate, "
                "raise the landmark stage's weight, or start with --gt-pooling-epochs so pooling does not depend on "
                "untrained landmarks."
            )
        return s
