"""FashionNetConfig: everything needed to rebuild a FashionNet, saved in every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional, Union

from fashionnet.models.backbones import list_backbones
from fashionnet.models.landmark_pooling import POOL_MODES

LANDMARK_HEADS = ("heatmap", "fc")


@dataclass
class FashionNetConfig:
    """Everything needed to rebuild a FashionNet (saved in checkpoints via :meth:`to_dict`).

    image_size: the letterboxed square side the data pipeline feeds (the network itself accepts
        any size; landmarks are always relative to the actual input).
    pool_window: side of the pooled window around a landmark, in conv4 cells.
    pool_output: each window is pooled to pool_output x pool_output.
    landmark_conv5_units: how many conv5 units the landmark branch copies (None: the backbone's
        default - all of them for vgg16/resnet50/tiny, the first stride-32 block for
        efficientnet_lite0, to keep FashionNet within 15% of the bare backbone's cost).
    landmark_head: how the landmark branch turns its features into coordinates. "fc" is the paper's
        fc regression; "heatmap" (default) predicts one heatmap per landmark on the conv4 grid,
        from conv4 plus the branch's upsampled conv5, and takes its soft-argmax. On the synthetic
        benchmark the fc head's points stayed far off on consumer photos (docs/experiments/landmark_head.md).
        Visibility always comes from the fc.
    num_categories / num_attributes: head sizes; 0 gives an empty (B, 0) head.
    appearance_weight: above 0 (default 2), the search embedding appends the global conv5's average pool (the
        backbone's own pooled feature, fine-tuned), L2-normalised and weighted by this, to the
        normalised fusion feature. The losses still train the fusion feature alone; the pooled map
        keeps much of what the ImageNet trunk knows, so it carries retrieval to styles the fusion
        layers never saw (docs/experiments/appearance_weight.md). The embedding grows by the conv5 width.
    box_head: predict the garment's box (x1, y1, x2, y2) in [0, 1] of the input from the global
        conv5 map (sized like the landmark branch: landmark_width, landmark_grid, landmark_hidden).
        Checkpoints saved before it existed load with False and predict no box.
    whiten_dim: above 0, the search embedding is the learned whitening of the descriptor
        [fusion, appearance, every pooled landmark window the local branch reads, colours, detail windows],
        projected to this many dimensions (fashionnet.calibration.whitening fits it on training photos after
        training and sets this; until then the projection is zero). 0: the embedding above.
    colour_window: above 0 (default 0.075), the descriptor also holds the input image's colours around each
        landmark: the mean colour of a 3 x 3 grid over a square window of this fraction of the input
        side (0.075: 12 px at 160 px). Trims, cuffs and hem bands are thin bands of colour at the
        landmarks, which the stride-16 conv4 windows blur with their surroundings. No weights; only
        the whitening reads it, so it can be switched on for a trained model (scripts/fit_whitening.py).
    detail_window: above 0 (default 0.107), the descriptor also holds the trunk's stride-4 and stride-8 maps pooled at
        each landmark (``roi_align``, 2 x 2 bins over a square window of this fraction of the input
        side; 0.107: 24 px at 224 px), where a band a few pixels wide still fills cells that the
        stride-16 windows blur. No weights; only the whitening reads it (its own part with
        ``whiten_by_part``), so it can be switched on for a trained model (scripts/fit_whitening.py).
    whiten_by_part: the whitening is fitted on each part of the descriptor alone (the appearance, or
        the fusion feature where the model has no appearance; the landmark windows; the landmark
        colours) and each part's whitened vector is normalised on its own, so a cosine is the mean of
        the parts' cosines (:meth:`FashionNet.whitening_parts`). One whitening over thousands of
        dimensions, fitted on a few hundred items, lets the largest part drown the small ones.
        Like ``whiten_dim`` it describes the whitening installed (``FashionNet.set_whitening``).
    """

    backbone: str = "efficientnet_lite0"
    pretrained: Union[bool, str] = False
    embedding_dim: int = 256
    num_categories: int = 0
    num_attributes: int = 0
    image_size: int = 224
    pool_window: float = 3.0
    pool_output: int = 2
    pool_mode: str = "max"
    local_dim: int = 512
    global_dim: int = 512
    landmark_conv5_units: Optional[int] = None
    landmark_width: int = 64
    landmark_grid: int = 7
    landmark_hidden: int = 256
    landmark_head: str = "heatmap"
    dropout: float = 0.0
    box_head: bool = True
    appearance_weight: float = 2.0
    whiten_dim: int = 0
    colour_window: float = 0.075
    whiten_by_part: bool = False
    detail_window: float = 0.107

    def __post_init__(self):
        if self.backbone not in list_backbones():
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(list_backbones())}")
        if self.pool_mode not in POOL_MODES:
            raise ValueError(f"pool_mode must be one of {POOL_MODES}, got {self.pool_mode!r}")
        for name in ("embedding_dim", "image_size", "pool_output", "local_dim", "global_dim", "landmark_width", "landmark_grid", "landmark_hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_categories", "num_attributes"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.landmark_head not in LANDMARK_HEADS:
            raise ValueError(f"landmark_head must be one of {LANDMARK_HEADS}, got {self.landmark_head!r}")
        if self.pool_window <= 0:
            raise ValueError(f"pool_window must be > 0, got {self.pool_window}")
        if self.whiten_dim < 0:
            raise ValueError(f"whiten_dim must be >= 0 (0: no whitening), got {self.whiten_dim}")
        if self.whiten_by_part and 0 < self.whiten_dim < self.whitening_part_count:
            raise ValueError(f"whiten_dim {self.whiten_dim} is below the {self.whitening_part_count} parts whitened one by one")
        if not 0 <= self.colour_window <= 0.5:
            raise ValueError(f"colour_window must be in [0, 0.5] of the input side (0: no landmark colours), got {self.colour_window}")
        if not 0 <= self.detail_window <= 0.5:
            raise ValueError(f"detail_window must be in [0, 0.5] of the input side (0: no detail windows), got {self.detail_window}")
        if not 0 <= self.appearance_weight <= 10:
            raise ValueError(f"appearance_weight must be in [0, 10] (0: the fusion feature alone), got {self.appearance_weight}")

    @property
    def whitening_part_count(self) -> int:
        """How many parts ``whiten_by_part`` whitens: the global part, the windows, and the colours and
        the detail windows where they are on."""
        return 2 + (self.colour_window > 0) + (self.detail_window > 0)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML friendly) for checkpoints."""
        d = dataclasses.asdict(self)
        if not isinstance(d["pretrained"], bool):
            d["pretrained"] = str(d["pretrained"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FashionNetConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error (they usually mean a typo)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown FashionNetConfig keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**d)
