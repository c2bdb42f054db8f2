"""What the Predictor returns for a photo: landmarks in its pixels, category, attributes, embedding,
garment box and how unfamiliar it looks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Below this heatmap confidence a landmark is a guess: its heatmap is flat or split between places
# (fashionnet.models.branches.heatmap_confidence; a peak with a one-cell spread scores ~0.5). On
# synthetic photos the points below it miss by far more than those above; how well it tells on real
# photos: docs/experiments/view_agreement.md.
LOW_CONFIDENCE = 0.25
# The category is named alone only when the model (temperature-calibrated) thinks it more likely right
# than wrong; below that the page and the API give the likeliest few instead of one wrong name.
SURE_CATEGORY_PROB = 0.5
# The garment's landmarks count as placed when at least this share of its points are sure; below it
# the page says in words that it cannot place them.
PLACED_LANDMARK_SHARE = 0.5


@dataclass
class Landmark:
    name: str
    x: float  # pixels of the original image
    y: float
    visibility: str  # visible / occluded / truncated (predicted); absent where the predicted clothes type has no such point
    visible_prob: float
    # how sure the heatmap is of the point, in [0, 1] (LOW_CONFIDENCE); None for models without heatmaps
    confidence: float | None = None
    # share of the position taken from the clothes type's layout in the garment box, because the
    # heatmap was unsure (fashionnet.calibration.landmark_prior); 0: the heatmap's point as predicted
    from_box_layout: float = 0.0

    @property
    def low_confidence(self) -> bool:
        return self.confidence is not None and self.confidence < LOW_CONFIDENCE


@dataclass
class Prediction:
    landmarks: list[Landmark]
    category: str | None
    category_prob: float
    attributes: list[tuple[str, float]]  # top attributes, most probable first
    embedding: np.ndarray  # (D,) float32, L2-normalised
    original_size: tuple[int, int]  # (width, height) of the photo as given
    category_scores: dict[str, float] = field(default_factory=dict)
    clothes_type: int | None = None  # 1 upper, 2 lower, 3 full: that of the predicted category
    # distance of the photo's trunk features from the training photos (fashionnet.calibration.ood); None when
    # the checkpoint carries no density
    unfamiliarity: float | None = None
    unfamiliar: bool | None = None  # unfamiliarity above the checkpoint's calibrated threshold
    # the garment's predicted (x1, y1, x2, y2) in the photo's pixels; None for models without a box head
    garment_box: tuple[float, float, float, float] | None = None
    cropped: bool = False  # the garment was small: everything above comes from a second pass on a crop around it
    below_face: bool = False  # the box was cut below the wearer's face (fashionnet.inference.faces), then cropped

    @property
    def present_landmarks(self) -> list[Landmark]:
        """The landmarks the predicted clothes type has (all 8 when it is unknown)."""
        return [lm for lm in self.landmarks if lm.visibility != "absent"]

    @property
    def category_sure(self) -> bool:
        """The category is likelier right than wrong (``SURE_CATEGORY_PROB``)."""
        return self.category is not None and self.category_prob >= SURE_CATEGORY_PROB

    def likely_categories(self, n: int = 3) -> list[tuple[str, float]]:
        """The ``n`` most probable categories, most probable first: what to show when unsure."""
        ranked = sorted(self.category_scores.items(), key=lambda kv: -kv[1])[:n]
        return ranked or ([(self.category, self.category_prob)] if self.category is not None else [])

    @property
    def landmarks_placed(self) -> bool | None:
        """At least ``PLACED_LANDMARK_SHARE`` of the garment's points are sure; None for models
        without a heatmap confidence."""
        present = self.present_landmarks
        if not present or any(lm.confidence is None for lm in present):
            return None
        return sum(not lm.low_confidence for lm in present) >= PLACED_LANDMARK_SHARE * len(present)

    def as_dict(self) -> dict:
        return {
            "landmarks": [{**vars(l), "low_confidence": l.low_confidence} for l in self.landmarks],
            "category": self.category,
            "category_prob": self.category_prob,
            "category_sure": self.category_sure,
            "likely_categories": [{"name": n, "prob": p} for n, p in self.likely_categories()],
            "landmarks_placed": self.landmarks_placed,
            "attributes": [{"name": n, "prob": p} for n, p in self.attributes],
            "original_size": list(self.original_size),
            "clothes_type": self.clothes_type,
            "unfamiliarity": self.unfamiliarity,
            "unfamiliar": self.unfamiliar,
            "garment_box": None if self.garment_box is None else list(self.garment_box),
            "cropped": self.cropped,
            "below_face": self.below_face,
        }
