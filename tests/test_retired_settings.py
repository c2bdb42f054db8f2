"""Settings that were measured, did no better, and were removed (fine_pool, pool_spread, whiten_mix,
colour_weight; the proxy loss, distillation, look-alike batches, the cross-batch memory). A checkpoint
that stored one at its "off" value loads as it did; one trained with it on is refused in one sentence."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from fashionnet.models.checkpoint import (
    RETIRED_SETTINGS,
    CheckpointError,
    atomic_torch_save,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from fashionnet.inference.predictor import Predictor
from fashionnet.models import FashionNetConfig, create_model
from fashionnet.training.train import resume_from

SIDE = 64


def _whitened_checkpoint(path, retired: dict) -> str:
    """A whitened tiny model saved as the code before the removal saved it: ``retired`` in its model
    config and, as every whitened model then had, a whiten_mix buffer. Returns the stored checksum."""
    torch.manual_seed(0)
    model = create_model(FashionNetConfig(backbone="tiny", embedding_dim=8, image_size=SIDE)).eval()
    model.set_whitening(torch.randn(model.descriptor_dim) * 0.01, torch.randn(model.descriptor_dim, 8),
                        torch.eye(4).repeat_interleave(2, dim=0))
    state = {**model.state_dict(), "whiten_mix": torch.tensor(float(retired.get("whiten_mix", 1.0)))}
    return save_checkpoint(path, model_state=state, model_config={**model.config.to_dict(), **retired},
                           label_maps={"categories": [], "attributes": []}, preprocessing={"image_size": SIDE}, epoch=0)


def test_a_checkpoint_with_the_retired_settings_off_loads_and_embeds_as_before(tmp_path):
    old, new = tmp_path / "old.pt", tmp_path / "new.pt"
    checksum = _whitened_checkpoint(old, RETIRED_SETTINGS)
    _whitened_checkpoint(new, {})
    model, config = model_from_checkpoint(load_checkpoint(old), old)
    assert "whiten_mix" not in model.state_dict() and config == model_from_checkpoint(load_checkpoint(new), new)[1]
    photo = np.random.default_rng(0).integers(0, 255, (80, 60, 3), dtype=np.uint8)
    before = Predictor.from_checkpoint(old, device="cpu", runtime="torch")
    assert before.model_checksum == checksum  # what its indexes recorded
    np.testing.assert_array_equal(before.predict(photo).embedding,
                                  Predictor.from_checkpoint(new, device="cpu", runtime="torch").predict(photo).embedding)


@pytest.mark.parametrize("name, value", [("fine_pool", True), ("pool_spread", 0.3), ("whiten_mix", 0.5), ("colour_weight", 3.0)])
def test_a_checkpoint_trained_with_a_retired_setting_on_is_refused_in_one_sentence(tmp_path, name, value):
    path = tmp_path / "old.pt"
    _whitened_checkpoint(path, {**RETIRED_SETTINGS, name: value})
    with pytest.raises(CheckpointError) as caught:
        Predictor.from_checkpoint(path, device="cpu", runtime="torch")
    message = str(caught.value)
    assert re.fullmatch(rf"{re.escape(str(path))}: this model was trained with {name}={value!r}, a setting this version no longer "
                        r"has \(it measured no better than without\); retrain it with the defaults", message), message


@pytest.mark.parametrize("option, value", [("proxy_weight", 1.0), ("distill_weight", 1.0), ("xbm_size", 1024), ("sampler", "look_alike")])
def test_a_run_trained_with_a_retired_option_is_not_resumed(tiny_checkpoint, tmp_path, option, value):
    ckpt = load_checkpoint(tiny_checkpoint)
    ckpt["args"] = {**ckpt["args"], option: value}
    path = tmp_path / "checkpoint.pt"
    atomic_torch_save(ckpt, path)
    with pytest.raises(SystemExit, match=rf"trained with {option}={value!r}, which this version no longer has; start a new run"):
        resume_from(str(path), None, None, None, None)
