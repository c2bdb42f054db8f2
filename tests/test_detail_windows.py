"""Detail windows (FashionNetConfig.detail_window): the trunk's stride-4 and stride-8 maps pooled at
each landmark, a weight-free part of the descriptor that the whitening reads on its own."""

from __future__ import annotations

import pytest
import torch

from fashionnet.inference.predictor import Predictor
from fashionnet.landmarks import OCCLUDED, VISIBLE
from fashionnet.models import FashionNetConfig, create_model
from fashionnet.models.checkpoint import load_checkpoint, model_from_checkpoint, state_dict_checksum
from fashionnet.training.train import main as train_main
from tests.conftest import TINY_TRAIN_ARGS, load_script

SIDE = 96
fit_whitening = load_script("fit_whitening")


def _tiny(detail_window: float = 24 / SIDE, colour_window: float = 0.1, **kwargs):
    torch.manual_seed(0)
    config = FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=SIDE, detail_window=detail_window,
                              colour_window=colour_window, appearance_weight=0.5, **kwargs)
    return create_model(config).eval()


def _detail_part(model, features, landmarks, visible):
    with torch.no_grad():
        descriptor = model.forward_head(features, landmarks, visible, with_descriptor=True)["descriptor"]
    return descriptor[:, model.whitening_parts()[-1]]


def test_detail_windows_read_the_stride4_and_stride8_maps_at_the_landmarks():
    model = _tiny()
    with torch.no_grad():
        features = model.forward_features(torch.rand(1, 3, SIDE, SIDE))
    fine4, fine8 = features["detail_maps"]
    assert fine4.shape[-1] == SIDE // 4 and fine8.shape[-1] == SIDE // 8
    assert model.detail_dim == 8 * 4 * (fine4.shape[1] + fine8.shape[1])
    landmarks = torch.full((1, 8, 2), 0.25)  # pixel (24, 24); the 24-px windows span pixels 12-36
    visible = torch.full((1, 8), VISIBLE)
    base = _detail_part(model, features, landmarks, visible)
    assert base.shape == (1, model.detail_dim) and torch.allclose(base.norm(dim=1), torch.ones(1))
    # cells at the windows' edge (pixels 12-16 at stride 4, 8-16 at stride 8), and cells well outside
    for level, (inside, outside) in enumerate((((3, 3), (15, 15)), ((1, 1), (8, 8)))):
        for (y, x), moves in ((inside, True), (outside, False)):
            changed = [m.clone() for m in features["detail_maps"]]
            changed[level][0, :, y, x] += 5.0
            after = _detail_part(model, {**features, "detail_maps": changed}, landmarks, visible)
            assert (not torch.allclose(after, base, atol=1e-6)) == moves, (level, y, x)
    hidden = visible.clone()
    hidden[0, 3] = OCCLUDED
    assert not torch.allclose(_detail_part(model, features, landmarks, hidden), base)


def test_the_detail_windows_are_on_by_default_and_in_the_checksum():
    plain = _tiny(detail_window=0.0)
    assert FashionNetConfig().detail_window == 0.107 and plain.detail_dim == 0
    assert "detail_window" not in plain.state_dict()
    with torch.no_grad():
        assert "detail_maps" not in plain.forward_features(torch.rand(1, 3, SIDE, SIDE))
    on, wider = _tiny(), _tiny(detail_window=0.4)
    assert on.descriptor_dim == plain.descriptor_dim + on.detail_dim
    assert state_dict_checksum(on.state_dict()) != state_dict_checksum(wider.state_dict())


@pytest.mark.parametrize("bad", [-0.1, 0.6])
def test_a_bad_detail_window_is_refused(bad):
    with pytest.raises(ValueError, match=r"detail_window must be in \[0, 0.5\]"):
        FashionNetConfig(detail_window=bad)


@pytest.mark.parametrize("colour_window", [0.1, 0.0])
def test_the_detail_windows_are_whitened_as_a_part_of_their_own(colour_window):
    model = _tiny(colour_window=colour_window)
    parts = model.whitening_parts()
    assert len(parts) == model.config.whitening_part_count == 3 + (colour_window > 0)
    assert parts[-1] == slice(model.descriptor_dim - model.detail_dim, model.descriptor_dim)
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))


def test_fit_whitening_switches_the_detail_windows_on_for_a_trained_model(tiny_checkpoint, synth_root, tmp_path, capsys):
    on, off = tmp_path / "on.pt", tmp_path / "off.pt"
    common = ["--dim", "8", "--colour-window", "0.1", "--by-part", "--data-root", str(synth_root / "consumer2shop"), "--no-progress"]
    fit_whitening.main(["--checkpoint", str(tiny_checkpoint), "--out", str(on), "--detail-window", "0.25", *common])
    assert "in 4 parts of 2, 2, 2, 2" in capsys.readouterr().out
    model, config = model_from_checkpoint(load_checkpoint(on), on)
    assert config.detail_window == 0.25 and load_checkpoint(on)["args"]["detail_window"] == 0.25
    assert model.detail_dim > 0 and model.whiten_projection.shape == (model.descriptor_dim, 8)
    trained = model_from_checkpoint(load_checkpoint(tiny_checkpoint), tiny_checkpoint)[0].state_dict()
    assert all(torch.equal(value, trained[name]) for name, value in model.state_dict().items() if name in trained
               and not name.startswith("whiten_") and name not in ("colour_window", "detail_window"))
    photo = sorted((synth_root / "consumer2shop").glob("img/*/*/*/*.jpg"))[0]
    assert Predictor.from_checkpoint(on, device="cpu", runtime="torch").predict(photo).embedding.shape == (8,)
    fit_whitening.main(["--checkpoint", str(on), "--out", str(off), "--detail-window", "0", *common])
    model, config = model_from_checkpoint(load_checkpoint(off), off)
    assert config.detail_window == 0 and model.detail_dim == 0 and model.whiten_projection.shape[0] == model.descriptor_dim


def test_training_with_detail_windows_learns_the_same_weights(synth_root, tmp_path):
    """No weights read them, so a run with them trains what a run without them does; only the
    whitening fitted at the end, which reads them as a fourth part, differs."""
    common = [*TINY_TRAIN_ARGS, "--data-root", str(synth_root / "consumer2shop"), "--batches-per-epoch", "2", "--joint-epochs", "1",
              "--ood-images", "0", "--whiten-dim", "8", "--colour-window", "0.1", "--whiten-by-part"]
    train_main([*common, "--output-dir", str(tmp_path / "without")])
    train_main([*common, "--output-dir", str(tmp_path / "with"), "--detail-window", "0.25"])
    without = load_checkpoint(tmp_path / "without" / "checkpoint.pt")["model"]
    with_details = load_checkpoint(tmp_path / "with" / "checkpoint.pt")["model"]
    trained = [name for name in without if not name.startswith("whiten_")]
    assert set(with_details) - set(without) == {"detail_window"}
    assert all(torch.equal(without[name], with_details[name]) for name in trained)
    assert with_details["whiten_groups"].sum(dim=0).tolist() == [2, 2, 2, 2] and without["whiten_groups"].shape[1] == 3
