"""FashionNet (Liu et al., CVPR 2016): shared trunk, global / landmark / local branches, fusion.

    image -> trunk (conv4) --+-> global conv5 -> GAP -> fc ------------------+
                             |        +-> grid -> fc -> garment box          |
                             +-> landmark conv5 -> fc -> 8 x (x, y), 8 x vis  |
                             +-> landmark pooling at (x, y) -> fc -----------+-> fusion fc -> heads
                                                                                    |
    embedding = L2-normalised fusion, with ``appearance_weight`` x the L2-normalised  |
    global conv5 GAP (the "appearance") appended when that weight is above 0 <------+

    with ``whiten_dim`` the embedding is instead the learned whitening (fashionnet.calibration.whitening) of
    the descriptor [fusion, appearance, the landmark windows, colours and detail windows], each part L2-normalised

At query time the local branch pools at the *predicted* landmarks (windows of landmarks predicted
not visible are zeroed). Ground-truth landmarks can be passed instead (early training, and the
upper bound at evaluation).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from fashionnet.landmarks import NUM_LANDMARKS, VISIBLE
from fashionnet.models.backbones import get_backbone, list_backbones, stage_at_stride
from fashionnet.models.branches import BoxHead, LandmarkBranch
from fashionnet.models.config import FashionNetConfig
from fashionnet.models.landmark_pooling import LandmarkPooling

# Outputs only some configurations have (see FashionNet).
OPTIONAL_OUTPUTS = ("landmark_confidence", "box", "appearance_feature", "descriptor")
DETAIL_STRIDES, DETAIL_GRID = (4, 8), 2  # detail_window: the trunk stages it pools, and its bins per side
# Landmark colours: each window's mean colour on a COLOUR_GRID x COLOUR_GRID grid of the input image.
COLOUR_GRID = 3


def _linear_head(in_features: int, out_features: int) -> nn.Linear:
    """A linear head; out_features 0 is allowed (empty logits) without PyTorch's init warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
        return nn.Linear(in_features, out_features)


class FashionNet(nn.Module):
    """FashionNet on a configurable backbone. Input: ImageNet-normalised (B, 3, H, W) images.

    ``forward`` returns a dict: embedding (B, search_dim) L2-normalised, landmarks (B, 8, 2) in [0, 1] of
    the input, visibility_logits (B, 8, 3), category_logits (B, C), attribute_logits (B, A),
    global_feature, local_feature, fusion_feature (pre-normalisation), pooled_visible (B, 8)
    (the windows that were pooled rather than zeroed), and where the model has them landmark_confidence
    (B, 8) in [0, 1] (heatmap head; :func:`heatmap_confidence`) and box (B, 4), the garment's
    (x1, y1, x2, y2) in [0, 1] of the input (``config.box_head``).
    """

    def __init__(self, config: FashionNetConfig, load_pretrained: bool = True):
        super().__init__()
        self.config = config
        backbone = get_backbone(config.backbone, pretrained=config.pretrained if load_pretrained else False)
        self.backbone_name = backbone.name
        self.trunk_stride = backbone.trunk_stride
        self.trunk_channels = backbone.trunk_channels
        self.trunk = backbone.trunk

        units = config.landmark_conv5_units if config.landmark_conv5_units is not None else backbone.default_landmark_conv5_units
        landmark_conv5, landmark_channels = backbone.make_conv5(units)
        self.landmark_branch = LandmarkBranch(
            landmark_conv5, landmark_channels, config.landmark_width, config.landmark_grid, config.landmark_hidden, config.dropout,
            head=config.landmark_head, trunk_channels=self.trunk_channels,
        )
        # The global branch takes the backbone's own conv5 (no copy needed).
        self.global_conv5 = backbone.conv5
        self.global_fc = nn.Sequential(nn.Linear(backbone.conv5_channels, config.global_dim), nn.ReLU(inplace=True), nn.Dropout(config.dropout))
        self.box_head = (BoxHead(backbone.conv5_channels, config.landmark_width, config.landmark_grid, config.landmark_hidden)
                         if config.box_head else None)

        self.landmark_pooling = LandmarkPooling(self.trunk_stride, config.pool_window, config.pool_output, config.pool_mode)
        pooled = NUM_LANDMARKS * self.trunk_channels * config.pool_output**2
        self.windows_dim = pooled
        self.colour_dim = NUM_LANDMARKS * 3 * COLOUR_GRID**2 if config.colour_window > 0 else 0
        if self.colour_dim:
            # stride 1: pools the image itself; a fixed sampling ratio so ONNX Runtime reads the same pixels
            self.colour_pooling = LandmarkPooling(1, 1.0, COLOUR_GRID, "align", sampling_ratio=2)
            self.register_buffer("colour_window", torch.tensor(float(config.colour_window)))  # in the checksum, as above
        self.detail_stages, self.detail_dim = [], 0
        if config.detail_window > 0:  # weight-free like the colours: the trunk's finer maps at each landmark
            found = [stage_at_stride(self.trunk, stride, self.backbone_name, "detail_window") for stride in DETAIL_STRIDES]
            self.detail_stages = [stage for stage, _ in found]
            self.detail_pooling = nn.ModuleList(LandmarkPooling(stride, 1.0, DETAIL_GRID, "align") for stride in DETAIL_STRIDES)
            self.detail_dim = NUM_LANDMARKS * DETAIL_GRID**2 * sum(channels for _, channels in found)
            self.register_buffer("detail_window", torch.tensor(float(config.detail_window)))  # in the checksum, as above
        self.local_fc = nn.Sequential(nn.Flatten(), nn.Linear(pooled, config.local_dim), nn.ReLU(inplace=True), nn.Dropout(config.dropout))

        self.fusion = nn.Linear(config.global_dim + config.local_dim, config.embedding_dim)
        self.category_head = _linear_head(config.embedding_dim, config.num_categories)
        self.attribute_head = _linear_head(config.embedding_dim, config.num_attributes)
        self.appearance_dim = backbone.conv5_channels if config.appearance_weight > 0 else 0
        if self.appearance_dim:
            # a buffer, so the weights' checksum (which every index records) changes with it
            self.register_buffer("appearance_weight", torch.tensor(float(config.appearance_weight)))
        if config.whiten_dim:
            groups = torch.zeros(config.whiten_dim, config.whitening_part_count) if config.whiten_by_part else None
            self._register_whitening(torch.zeros(self.descriptor_dim), torch.zeros(self.descriptor_dim, config.whiten_dim), groups)

    @property
    def descriptor_dim(self) -> int:
        """Length of ``descriptor``: the fusion feature, the appearance where the model has it, every
        pooled landmark window the local branch reads, and the landmark colours where they are on."""
        return self.config.embedding_dim + self.appearance_dim + self.windows_dim + self.colour_dim + self.detail_dim

    @property
    def search_dim(self) -> int:
        """Length of ``embedding``: the fusion feature plus the appearance when it is appended, or the
        whitened dimensions."""
        return self.config.whiten_dim or self.config.embedding_dim + self.appearance_dim

    def whitening_parts(self) -> list[slice]:
        """The descriptor's parts that ``whiten_by_part`` whitens one by one: the appearance (the fusion
        feature where the model has none), the landmark windows, and the colours and the detail
        windows where they are on.
        The fusion feature is left out beside the appearance: it is learned from the global and local
        features, so it would count them twice."""
        fusion, windows_start = self.config.embedding_dim, self.config.embedding_dim + self.appearance_dim
        windows_end = windows_start + self.windows_dim
        parts = [slice(fusion, windows_start) if self.appearance_dim else slice(0, fusion), slice(windows_start, windows_end)]
        colours_end = windows_end + self.colour_dim
        if self.colour_dim:
            parts.append(slice(windows_end, colours_end))
        if self.detail_dim:
            parts.append(slice(colours_end, colours_end + self.detail_dim))
        return parts

    def _register_whitening(self, mean: torch.Tensor, projection: torch.Tensor, groups: Optional[torch.Tensor] = None) -> None:
        # buffers, so they travel in the state dict and the weights' checksum (which every index records) changes with them
        self.register_buffer("whiten_mean", mean.float().clone())
        self.register_buffer("whiten_projection", projection.float().clone())
        if groups is not None:  # (whiten_dim, parts) one-hot: which part each whitened dimension belongs to
            self.register_buffer("whiten_groups", groups.float().clone())
        elif "whiten_groups" in self._buffers:
            del self._buffers["whiten_groups"]

    def set_whitening(self, mean: torch.Tensor, projection: torch.Tensor, groups: Optional[torch.Tensor] = None) -> None:
        """Install a learned whitening (fashionnet.calibration.whitening): from now on the embedding is
        normalise((descriptor - mean) @ projection); with ``groups`` ((d, parts) one-hot,
        fashionnet.calibration.whitening.fit_partwise_whitening) each part's dimensions are normalised on their
        own instead. ``config.whiten_dim`` and ``whiten_by_part`` follow."""
        mean, projection = torch.as_tensor(mean), torch.as_tensor(projection)
        if mean.shape != (self.descriptor_dim,) or projection.ndim != 2 or projection.shape[0] != self.descriptor_dim:
            raise ValueError(f"whitening must be a mean ({self.descriptor_dim},) and a projection ({self.descriptor_dim}, d); "
                             f"got {tuple(mean.shape)} and {tuple(projection.shape)}")
        if groups is not None:
            groups = torch.as_tensor(groups)
            expected = (projection.shape[1], self.config.whitening_part_count)
            if tuple(groups.shape) != expected or not torch.equal(groups.sum(dim=1), torch.ones(expected[0], dtype=groups.dtype)) \
                    or not ((groups == 0) | (groups == 1)).all():
                raise ValueError(f"whitening groups must be a one-hot {expected} matrix (one part per whitened dimension), got {tuple(groups.shape)}")
        config = dataclasses.replace(self.config, whiten_dim=int(projection.shape[1]), whiten_by_part=groups is not None)
        device = self.fusion.weight.device
        self._register_whitening(mean.to(device), projection.to(device), None if groups is None else groups.to(device))
        self.config = config

    def whitening_scales(self, z: torch.Tensor) -> torch.Tensor:
        """(B, whiten_dim) factors that turn z = (descriptor - mean) @ projection into the whitened
        embedding: 1 / |z| throughout a row, or with ``whiten_by_part`` 1 / (|z's part| x sqrt(parts))
        for each part's dimensions."""
        if not self.config.whiten_by_part:
            return (1.0 / z.norm(dim=1, keepdim=True).clamp_min(1e-12)).expand_as(z)
        groups = self.whiten_groups.to(z.dtype)
        part_norms = ((z * z) @ groups).clamp_min(1e-24).sqrt()  # (B, parts)
        return 1.0 / (part_norms @ groups.T) / groups.shape[1] ** 0.5

    def _whitened(self, descriptor: torch.Tensor) -> torch.Tensor:
        """The whitened search embedding of (B, descriptor_dim) descriptors (unit length)."""
        z = (descriptor - self.whiten_mean.to(descriptor.dtype)) @ self.whiten_projection.to(descriptor.dtype)
        return z * self.whitening_scales(z)

    def _run_trunk(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[int, torch.Tensor]]:
        """conv4, each channel's spatial mean and std at a middle trunk stage and at conv4, and the
        outputs of the stages that ``detail_window`` reads, by stage index.

        The statistics feed the out-of-distribution check (fashionnet.calibration.ood): the middle stage sees
        texture (noise, flat colour), the last one content. Costs a few reductions per forward.
        """
        def stats(x: torch.Tensor) -> torch.Tensor:
            flat = x.float().flatten(2)
            return torch.cat([flat.mean(dim=2), flat.std(dim=2, correction=0)], dim=1)

        if not isinstance(self.trunk, nn.Sequential) or len(self.trunk) < 2:
            conv4 = self.trunk(images)
            return conv4, stats(conv4), {}  # detail_window refuses such trunks (stage_at_stride)
        middle = (len(self.trunk) - 1) // 2
        x, taps = images, {}
        for i, stage in enumerate(self.trunk):
            x = stage(x)
            if i == middle:
                middle_stats = stats(x)
            if i in self.detail_stages:
                taps[i] = x
        return x, torch.cat([middle_stats, stats(x)], dim=1), taps

    def forward_features(self, images: torch.Tensor) -> dict[str, Any]:
        """Trunk, global branch and landmark branch: conv4, global_feature, landmarks, visibility_logits."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        conv4, trunk_stats, taps = self._run_trunk(images)
        global_conv5 = self.global_conv5(conv4)
        appearance = global_conv5.mean(dim=(2, 3))
        global_feature = self.global_fc(appearance)
        landmarks, visibility_logits, confidence = self.landmark_branch(conv4)
        extra = {} if self.box_head is None else {"box": self.box_head(global_conv5)}
        if self.detail_stages:
            extra["detail_maps"] = [taps[i] for i in self.detail_stages]
        if self.appearance_dim:
            extra["appearance_feature"] = appearance
        if self.colour_dim:
            extra["image"] = images  # forward_head reads its colours at the landmarks it pools at
        if confidence is not None:
            extra["landmark_confidence"] = confidence
        return {
            **extra,
            "conv4": conv4,
            "trunk_stats": trunk_stats,
            "global_feature": global_feature,
            "landmarks": landmarks,
            "visibility_logits": visibility_logits,
            "input_height_width": (int(images.shape[-2]), int(images.shape[-1])),
        }

    def forward_head(
        self, features: dict[str, Any], landmarks: Optional[torch.Tensor] = None, visibility: Optional[torch.Tensor] = None,
        with_descriptor: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Landmark pooling, fusion and heads on the output of :meth:`forward_features`.

        landmarks: (B, 8, 2) normalised landmarks to pool at (default: the predicted ones).
        visibility: (B, 8) visibility codes; windows with code != VISIBLE are zeroed (default: the
        argmax of the predicted visibility).
        with_descriptor: also return ``descriptor`` (B, descriptor_dim), which a whitened model always returns.
        """
        pool_at = features["landmarks"] if landmarks is None else landmarks.to(features["conv4"].dtype)
        if visibility is None:
            pooled_visible = features["visibility_logits"].argmax(dim=-1) == VISIBLE
        else:
            pooled_visible = visibility == VISIBLE
        if pool_at.shape[1:] != (NUM_LANDMARKS, 2) or pooled_visible.shape[1:] != (NUM_LANDMARKS,):
            raise ValueError(f"expected landmarks (B, {NUM_LANDMARKS}, 2) and visibility (B, {NUM_LANDMARKS}), got {tuple(pool_at.shape)} and {tuple(pooled_visible.shape)}")
        hw = features["input_height_width"]
        windows = [self.landmark_pooling(features["conv4"], pool_at, pooled_visible, hw)]
        pooled = torch.cat([w.flatten(1) for w in windows], dim=1)
        local_feature = self.local_fc(pooled)
        fusion = self.fusion(torch.cat([features["global_feature"], local_feature], dim=1))
        extra = {}
        if with_descriptor or self.config.whiten_dim:
            colours = None
            if self.colour_dim:
                side = self.config.colour_window * (hw[0] + hw[1]) / 2
                colours = self.colour_pooling(features["image"], pool_at, pooled_visible, hw, side)
            details = None
            if self.detail_dim:
                side = self.config.detail_window * (hw[0] + hw[1]) / 2
                details = [pool(fmap, pool_at, pooled_visible, hw, side) for pool, fmap in zip(self.detail_pooling, features["detail_maps"])]
            extra["descriptor"] = descriptor = self._descriptor(fusion, features.get("appearance_feature"), windows, colours, details)
        if self.config.whiten_dim:
            embedding = self._whitened(descriptor)
        else:
            embedding = F.normalize(fusion, dim=1)
            if self.appearance_dim:
                appearance = self.appearance_weight * F.normalize(features["appearance_feature"], dim=1)
                embedding = F.normalize(torch.cat([embedding, appearance.to(embedding.dtype)], dim=1), dim=1)
        return {
            **extra,
            "embedding": embedding,
            "landmarks": features["landmarks"],
            "visibility_logits": features["visibility_logits"],
            "category_logits": self.category_head(fusion),
            "attribute_logits": self.attribute_head(fusion),
            "global_feature": features["global_feature"],
            "trunk_stats": features["trunk_stats"],
            "local_feature": local_feature,
            "fusion_feature": fusion,
            "pooled_visible": pooled_visible,
            **{k: features[k] for k in OPTIONAL_OUTPUTS if k in features},
        }

    def _descriptor(self, fusion: torch.Tensor, appearance: Optional[torch.Tensor], windows: list[torch.Tensor],
                    colours: Optional[torch.Tensor] = None, details: Optional[list[torch.Tensor]] = None) -> torch.Tensor:
        """[fusion, appearance, windows, colours, detail windows], each but the colours L2-normalised
        (and each landmark window before the windows are joined), so that no part and no landmark
        outweighs another by its scale alone. The colours are divided by the square root of their
        count instead, which gives them about unit length too but keeps how bright and how saturated
        they are."""
        def unit_windows(pooled: list[torch.Tensor]) -> torch.Tensor:
            joined = torch.cat([F.normalize(w.flatten(2), dim=2) for w in pooled], dim=2).flatten(1)
            return F.normalize(joined, dim=1).to(fusion.dtype)

        parts = [F.normalize(fusion, dim=1)]
        if self.appearance_dim:
            parts.append(F.normalize(appearance, dim=1).to(fusion.dtype))
        parts.append(unit_windows(windows))
        if colours is not None:
            # a product, not a division: the indexes already built used it, and their vectors must stay bit for bit
            parts.append((colours.flatten(1) * (1.0 / self.colour_dim**0.5)).to(fusion.dtype))
        if details is not None:
            parts.append(unit_windows(details))
        return torch.cat(parts, dim=1)

    def forward(
        self, images: torch.Tensor, pool_landmarks: Optional[torch.Tensor] = None, pool_visibility: Optional[torch.Tensor] = None,
        with_descriptor: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Full forward; pools at ``pool_landmarks``/``pool_visibility`` (ground truth) when given."""
        return self.forward_head(self.forward_features(images), pool_landmarks, pool_visibility, with_descriptor)


def create_model(config: FashionNetConfig, load_pretrained: bool = True) -> FashionNet:
    """Build a FashionNet. ``load_pretrained=False`` skips backbone weights (e.g. before loading a checkpoint)."""
    return FashionNet(config, load_pretrained=load_pretrained)


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`: ``fashionnet_<backbone>``."""
    return [f"fashionnet_{b}" for b in list_backbones()]


def get_model(name: str, **kwargs: Any) -> FashionNet:
    """``get_model("fashionnet_efficientnet_lite0", num_categories=9, pretrained=True)``.

    The ``fashionnet_`` prefix is optional; keyword arguments are :class:`FashionNetConfig` fields.
    """
    backbone = name[len("fashionnet_") :] if name.startswith("fashionnet_") else name
    if backbone not in list_backbones():
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    return create_model(FashionNetConfig.from_dict({**kwargs, "backbone": backbone}))
