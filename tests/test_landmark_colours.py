"""Landmark colours: the input image's colours around each landmark, read into the search
descriptor so the learned whitening can tell siblings apart by the colour of a trim or a band."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fashionnet.inference.predictor import Predictor
from fashionnet.landmarks import VISIBLE
from fashionnet.models import FashionNetConfig, create_model
from fashionnet.models.checkpoint import load_checkpoint, model_from_checkpoint, state_dict_checksum
from fashionnet.models.fashionnet import COLOUR_GRID
from tests.conftest import load_script

fit_whitening = load_script("fit_whitening")

SIDE = 64


def _tiny(colour_window: float, seed: int = 0):
    torch.manual_seed(seed)
    # no detail windows: the colours are then the descriptor's last part
    config = FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=SIDE, colour_window=colour_window, detail_window=0.0)
    return create_model(config, load_pretrained=False).eval()


def _colours(model, image, landmarks, visibility):
    """The descriptor's colour part as (landmarks, 3 channels, grid, grid), undone from its scaling."""
    with torch.no_grad():
        out = model(image, landmarks, visibility, with_descriptor=True)
    colours = out["descriptor"][:, -model.colour_dim:] * model.colour_dim**0.5
    return colours.view(len(image), 8, 3, COLOUR_GRID, COLOUR_GRID)


def test_each_window_reads_the_colour_at_its_own_landmark():
    # a grey image with a red 8 x 8 patch centred at pixel (16, 40) and a blue one at (48, 12)
    image = torch.zeros(1, 3, SIDE, SIDE)
    image[0, 0, 36:44, 12:20] = 2.0
    image[0, 2, 8:16, 44:52] = -1.5
    model = _tiny(colour_window=6 / SIDE)  # 6-px windows: inside each patch
    landmarks = torch.full((1, 8, 2), 0.5)
    landmarks[0, 0] = torch.tensor([16, 40]) / SIDE
    landmarks[0, 1] = torch.tensor([48, 12]) / SIDE
    landmarks[0, 3] = torch.tensor([16, 40]) / SIDE  # on the red patch, but not visible
    visibility = torch.full((1, 8), VISIBLE)
    visibility[0, 3] = 1
    grid = _colours(model, image, landmarks, visibility)[0]
    torch.testing.assert_close(grid[0, 0], torch.full((COLOUR_GRID, COLOUR_GRID), 2.0))
    torch.testing.assert_close(grid[0, 1:], torch.zeros(2, COLOUR_GRID, COLOUR_GRID))
    torch.testing.assert_close(grid[1, 2], torch.full((COLOUR_GRID, COLOUR_GRID), -1.5))
    torch.testing.assert_close(grid[1, :2], torch.zeros(2, COLOUR_GRID, COLOUR_GRID))
    assert grid[2].abs().max() == 0 and grid[3].abs().max() == 0  # grey centre; an invisible landmark reads nothing


def test_the_grid_keeps_where_in_the_window_a_band_runs():
    """A hem band is a stripe across the bottom of the hem window: the bottom row of the grid sees it,
    the top row does not, so a band and a blotch of the same colour differ."""
    image = torch.zeros(1, 3, SIDE, SIDE)
    image[0, 1, 34:, :] = 1.0  # a green band from row 34 down
    model = _tiny(colour_window=12 / SIDE)
    landmarks = torch.full((1, 8, 2), 30 / SIDE)  # windows span rows 24-36
    grid = _colours(model, image, landmarks, torch.full((1, 8), VISIBLE))[0, 0, 1]
    assert grid[-1].min() > 0.3 and grid[0].abs().max() == 0


def test_on_by_default_and_checkpoints_without_them_load_unchanged(tiny_checkpoint):
    assert FashionNetConfig().colour_window == 0.075
    plain, coloured = _tiny(0.0), _tiny(0.1)
    assert plain.colour_dim == 0 and "colour_window" not in plain.state_dict()
    assert coloured.descriptor_dim == plain.descriptor_dim + 8 * 3 * COLOUR_GRID**2
    ckpt = load_checkpoint(tiny_checkpoint)  # trained with --colour-window 0
    model, config = model_from_checkpoint(ckpt, tiny_checkpoint)
    assert config.colour_window == 0 and model.colour_dim == 0
    del ckpt["model_config"]["colour_window"]  # as saved before the setting existed
    assert model_from_checkpoint(ckpt, tiny_checkpoint)[1].colour_window == 0


def test_the_colour_window_is_in_the_checksum_an_index_records():
    assert state_dict_checksum(_tiny(0.1).state_dict()) != state_dict_checksum(_tiny(0.05).state_dict())


@pytest.mark.parametrize("bad", [-0.1, 0.6])
def test_a_bad_colour_window_is_refused(bad):
    with pytest.raises(ValueError, match="colour_window must be in \\[0, 0.5\\]"):
        FashionNetConfig(colour_window=bad)


def test_score_parts_still_add_up_with_colours(synth_root):
    """The colours are local evidence: the page's score split counts them as "local"."""
    model = _tiny(0.1)
    model.set_whitening(torch.randn(model.descriptor_dim) * 0.01, torch.randn(model.descriptor_dim, 6))
    predictor = Predictor(model, model.config, {"categories": [], "attributes": []}, {"image_size": SIDE}, "test", device="cpu",
                          fold_batch_norms=False, runtime="torch")
    photos = sorted((synth_root / "consumer2shop").glob("img/*/*/*/*.jpg"))[:3]
    embeddings = np.stack([p.embedding for p in predictor.predict_batch(photos)])
    parts = predictor.score_parts(embeddings[0], photos[1:])  # the sum fails if any part of the descriptor is left out
    np.testing.assert_allclose([sum(p.values()) for p in parts], embeddings[1:] @ embeddings[0], atol=1e-4)


def test_fit_whitening_script_switches_the_colours_on_and_off(tiny_checkpoint, synth_root, tmp_path, capsys):
    before = tiny_checkpoint.read_bytes()
    on, off = tmp_path / "colours.pt", tmp_path / "plain.pt"
    common = ["--dim", "4", "--data-root", str(synth_root / "consumer2shop"), "--no-progress", "--augmented-views", "0"]
    fit_whitening.main(["--checkpoint", str(tiny_checkpoint), "--out", str(on), "--colour-window", "0.1", *common])
    assert tiny_checkpoint.read_bytes() == before
    model, config = model_from_checkpoint(load_checkpoint(on), on)
    assert config.colour_window == 0.1 and config.whiten_dim == 4
    assert model.whiten_projection.shape[0] == model.descriptor_dim
    assert model.whiten_projection[-model.colour_dim:].abs().sum() > 0  # the whitening reads the colours
    photo = sorted((synth_root / "consumer2shop").glob("img/*/*/*/*.jpg"))[0]
    assert Predictor.from_checkpoint(on, device="cpu", runtime="torch").predict(photo).embedding.shape == (4,)
    fit_whitening.main(["--checkpoint", str(on), "--out", str(off), "--colour-window", "0", *common])
    model, config = model_from_checkpoint(load_checkpoint(off), off)
    assert config.colour_window == 0 and model.colour_dim == 0 and model.whiten_projection.shape[0] == model.descriptor_dim
    with pytest.raises(SystemExit, match="colour_window must be in"):
        fit_whitening.main(["--checkpoint", str(tiny_checkpoint), "--out", str(on), "--colour-window", "2", *common])
    assert "learned whitening" in capsys.readouterr().out
