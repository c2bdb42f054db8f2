"""Checkpoint loading refuses what it must: weights changed behind an intact-looking checksum, and
pickles that would run code. Real checkpoints of a tiny (untrained) FashionNet, written by
save_checkpoint, are the starting point; no training is needed."""

from __future__ import annotations

import pytest
import torch

from fashionnet.inference.predictor import Predictor
from fashionnet.models import FashionNetConfig, create_model
from fashionnet.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def _real_checkpoint(path):
    torch.manual_seed(0)
    config = FashionNetConfig(backbone="tiny", embedding_dim=8, num_categories=2, num_attributes=3, image_size=64,
                              local_dim=8, global_dim=8, landmark_hidden=8, landmark_width=4)
    model = create_model(config, load_pretrained=False)
    save_checkpoint(path, model_state=model.state_dict(), model_config=config.to_dict(),
                    label_maps={"categories": ["Tees", "Skirts"], "attributes": ["a", "b", "c"]},
                    preprocessing={"image_size": 64}, epoch=0)
    return path


def _tamper(src, dst):
    """Change one weight value by a tiny amount and save with torch.save, keeping the stored checksum."""
    raw = torch.load(src, map_location="cpu", weights_only=True)
    key = next(k for k, v in raw["model"].items() if v.is_floating_point() and v.numel() > 1)
    raw["model"][key] = raw["model"][key].clone()
    raw["model"][key].view(-1)[0] += 1e-3
    torch.save(raw, dst)
    return raw["model_checksum"]


def test_untouched_checkpoint_loads(tmp_path):
    ckpt = load_checkpoint(_real_checkpoint(tmp_path / "good.pt"))
    assert ckpt["label_maps"]["categories"] == ["Tees", "Skirts"]


def test_one_changed_weight_behind_the_stored_checksum_is_refused(tmp_path):
    good = _real_checkpoint(tmp_path / "good.pt")
    bad = tmp_path / "tampered.pt"
    stored = _tamper(good, bad)
    assert torch.load(bad, weights_only=True)["model_checksum"] == stored  # the checksum field itself is intact
    with pytest.raises(CheckpointError, match=r"tampered\.pt.*checksum"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match=r"tampered\.pt"):
        Predictor.from_checkpoint(bad, device="cpu", runtime="torch")
    # verify=False is the documented way to look inside such a file anyway.
    assert load_checkpoint(bad, verify=False)["model_checksum"] == stored


def test_checkpoint_is_loaded_with_weights_only(tmp_path, monkeypatch):
    path = _real_checkpoint(tmp_path / "good.pt")
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_checkpoint(path)
    assert calls, "load_checkpoint did not go through torch.load"
    # Explicitly True: older torch releases the package allows default to weights_only=False.
    assert all(kw.get("weights_only") is True for kw in calls), calls


class _RunsCodeWhenUnpickled:
    """Unpickling this calls a global (open) that creates a file: what weights_only must refuse."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path):
    path = _real_checkpoint(tmp_path / "evil.pt")
    raw = torch.load(path, weights_only=True)
    marker = tmp_path / "code-ran"
    raw["label_maps"]["categories"] = [_RunsCodeWhenUnpickled(marker)]
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt"):
        load_checkpoint(path)
    assert not marker.exists(), "loading the checkpoint ran code from the file"
