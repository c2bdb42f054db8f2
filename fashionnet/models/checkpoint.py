"""Checkpoints: one dict of model, optimizer, scheduler, epoch and args (torchvision's layout), plus
what inference needs (model config, label maps, preprocessing). Saved atomically, loaded with
``weights_only=True`` and checked before use; :func:`model_from_checkpoint` turns one back into the
FashionNet it describes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from fashionnet.models.config import FashionNetConfig
from fashionnet.models.fashionnet import create_model

CHECKPOINT_FORMAT = "fashionnet-checkpoint/1"
REQUIRED_KEYS = ("format", "model", "model_config", "label_maps", "preprocessing", "epoch", "model_checksum")
# Model settings removed because they did no better (docs/experiments/tried_and_removed.md), each at
# the value that meant "off", so an old checkpoint still loads when it has them off; whiten_mix was
# also a buffer of every whitened model.
RETIRED_SETTINGS = {"fine_pool": False, "pool_spread": 0.0, "whiten_mix": 1.0, "colour_weight": 1.0}
RETIRED_BUFFERS = ("whiten_mix", "colour_weight")
# What a checkpoint that lacks a setting was trained with: the value that matches the model before the setting existed, not its default.
BEFORE_THE_SETTING = {"landmark_head": "fc", "box_head": False, "appearance_weight": 0.0, "colour_window": 0.0, "detail_window": 0.0}


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, or not a FashionNet checkpoint."""


def state_dict_checksum(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over parameter names, shapes, dtypes and values, in key order.

    Identifies the weights themselves, so an index can tell whether it was built by this model.
    """
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key]
        h.update(key.encode())
        if isinstance(t, torch.Tensor):
            t = t.detach().to("cpu").contiguous()
            h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(t).encode())
    return h.hexdigest()[:16]


def replace_model(ckpt: dict, model: torch.nn.Module) -> None:
    """Put ``model``'s weights, config and checksum into a loaded checkpoint dict (after a post-training
    change to the model, such as its learned whitening); the rest of the checkpoint is kept."""
    state = model.state_dict()
    ckpt.update(model=state, model_config=model.config.to_dict(), model_checksum=state_dict_checksum(state))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """Write to a temp file in the same directory, fsync, then rename: a killed save leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: str | os.PathLike, *, model_state: Mapping[str, torch.Tensor], model_config: dict,
                    label_maps: dict, preprocessing: dict, epoch: int, **extra: Any) -> str:
    """Save a checkpoint; returns the model checksum stored in it."""
    checksum = state_dict_checksum(model_state)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "model": dict(model_state),
        "model_config": model_config,
        "label_maps": label_maps,
        "preprocessing": preprocessing,
        "epoch": int(epoch),
        "model_checksum": checksum,
        **extra,
    }
    atomic_torch_save(ckpt, path)
    return checksum


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", verify: bool = True) -> dict:
    """Load and validate a checkpoint. Raises CheckpointError with the file name and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file. Train one with scripts/train_fashionnet.py.")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle, zip and unsafe-type errors all mean "not a checkpoint we trust"
        raise CheckpointError(_unreadable_reason(path, exc)) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a FashionNet checkpoint (top level is {type(ckpt).__name__}, expected a dict)")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a FashionNet checkpoint: missing key(s) {', '.join(missing)}")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: unsupported checkpoint format {ckpt['format']!r} (expected {CHECKPOINT_FORMAT!r})")
    if verify and state_dict_checksum(ckpt["model"]) != ckpt["model_checksum"]:
        raise CheckpointError(f"{path}: model weights do not match the stored checksum; the file is damaged")
    return ckpt


def _unreadable_reason(path: Path, exc: Exception) -> str:
    """One clear sentence for a file torch.load refused. torch's own text is not passed on: for an
    unsafe file it advises loading with weights_only=False, which would run the file's code."""
    text = str(exc)
    if "Unsupported global" in text or "GLOBAL" in text:
        return (f"{path}: refused: the file holds Python objects other than tensors and plain values, which "
                "could run code when loaded. FashionNet checkpoints never do; use a checkpoint written by "
                "scripts/train_fashionnet.py")
    if path.stat().st_size == 0:
        return f"{path}: not a FashionNet checkpoint: the file is empty"
    return (f"{path}: not a FashionNet checkpoint: it is not a PyTorch checkpoint file "
            "(damaged, truncated, or another kind of file)")


def without_retired_settings(ckpt: dict, path: str | os.PathLike = "<checkpoint>") -> tuple[dict, dict]:
    """(model config, weights) of a loaded checkpoint less the retired settings (RETIRED_SETTINGS),
    which it may hold at their "off" value; raises CheckpointError for one that was switched on."""
    config = dict(ckpt["model_config"])
    for name, off in RETIRED_SETTINGS.items():
        if name in config and config.pop(name) != off:
            raise CheckpointError(f"{path}: this model was trained with {name}={ckpt['model_config'][name]!r}, a setting this "
                                  "version no longer has (it measured no better than without); retrain it with the defaults")
    return config, {k: v for k, v in ckpt["model"].items() if k not in RETIRED_BUFFERS}


def model_from_checkpoint(ckpt: dict, path: str | os.PathLike = "<checkpoint>") -> tuple[torch.nn.Module, FashionNetConfig]:
    """Rebuild the FashionNet a loaded checkpoint describes; refuses weights that do not fit it."""
    saved, state = without_retired_settings(ckpt, path)
    try:
        config = FashionNetConfig.from_dict({**BEFORE_THE_SETTING, **saved})
        model = create_model(config, load_pretrained=False)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: checkpoint has an unusable model_config: {exc}") from None
    _check_shapes(model, state, path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: checkpoint does not fit the FashionNet it describes: "
                              f"missing keys {', '.join(missing[:5]) or 'none'}; unexpected keys {', '.join(unexpected[:5]) or 'none'}")
    return model, config


def _check_shapes(model: torch.nn.Module, state: dict, path) -> None:
    own = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (model wants {tuple(own[k].shape)})" for k, v in state.items() if k in own and own[k].shape != v.shape]
    if wrong:
        raise CheckpointError(f"{path}: checkpoint does not fit the FashionNet it describes: wrong shapes for {'; '.join(wrong[:3])}")


def input_side(preprocessing: Mapping[str, Any], config: FashionNetConfig) -> int:
    """The square side, in pixels, that a checkpoint's model takes its photos letterboxed to."""
    return int(preprocessing.get("image_size", config.image_size))
