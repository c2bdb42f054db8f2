"""Learned whitening: the projection that scales up what tells items apart and scales down what
the camera changes, installed in the model, fitted by training and by scripts/fit_whitening.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fashionnet.calibration.whitening import apply_whitening, fit_learned_whitening
from fashionnet.inference.predictor import Predictor
from fashionnet.models import FashionNetConfig, create_model
from fashionnet.models.checkpoint import load_checkpoint, model_from_checkpoint
from fashionnet.training.train import main as train_main
from tests.conftest import TINY_TRAIN_ARGS, load_script

fit_whitening = load_script("fit_whitening")


def _siblings(rng, items=12, photos=4, detail=0.15, nuisance=1.0, jitter=0.03):
    """Descriptors of items that differ only by a small detail (dims 0-3, which photos of one item
    barely move) while each photo adds a large nuisance (dims 4-11), the way a camera moves a
    descriptor more than a collar trim does."""
    codes = np.repeat(rng.normal(size=(items, 4)) * detail, photos, axis=0) + rng.normal(size=(items * photos, 4)) * jitter
    x = np.concatenate([codes, rng.normal(size=(items * photos, 8)) * nuisance], axis=1)
    return x + 3.0, np.repeat(np.arange(items), photos)  # an offset: the mean must be taken out


def _top1(queries, q_items, gallery, g_items):
    def unit(v):
        return v / np.linalg.norm(v, axis=1, keepdims=True)
    return float(np.mean(g_items[np.argmax(unit(queries) @ unit(gallery).T, axis=1)] == q_items))


def test_whitening_finds_the_item_where_the_raw_descriptor_cannot():
    rng = np.random.default_rng(0)
    train_x, train_items = _siblings(rng, items=40)
    mean, projection = fit_learned_whitening(train_x, train_items, dim=4, shrinkage=0.0)
    # new items (never fitted on): one photo queries another of the same items
    test_x, test_items = _siblings(rng, items=12, photos=2)
    q, g = test_x[::2], test_x[1::2]
    raw = _top1(q, test_items[::2], g, test_items[1::2])
    whitened = _top1(apply_whitening(q, mean, projection), test_items[::2], apply_whitening(g, mean, projection), test_items[1::2])
    assert raw < 0.4 and whitened > 0.8, (raw, whitened)


def test_photos_of_one_item_vary_alike_in_every_kept_direction():
    """The definition: projected training photos have an identity within-item covariance (no
    shrinkage), and the kept directions are those where items' means spread the most."""
    rng = np.random.default_rng(1)
    x, items = _siblings(rng, items=30, photos=5)
    mean, projection = fit_learned_whitening(x, items, dim=5, shrinkage=0.0)
    z = (x - mean) @ projection
    item_means = np.stack([z[items == i].mean(axis=0) for i in range(30)])
    within = z - item_means[items]
    np.testing.assert_allclose(within.T @ within / (len(z) - 30), np.eye(5), atol=1e-4)
    spread = item_means.var(axis=0)
    assert np.all(np.diff(spread) <= 1e-9), spread  # most spread first


def test_bad_fits_are_refused_with_the_reason():
    x, items = _siblings(np.random.default_rng(0), items=5)
    with pytest.raises(ValueError, match="below the 5 training items"):
        fit_learned_whitening(x, items, dim=5)
    with pytest.raises(ValueError, match="shrinkage"):
        fit_learned_whitening(x, items, dim=2, shrinkage=1.0)
    with pytest.raises(ValueError, match="2 or more photos"):
        fit_learned_whitening(x[::4], items[::4], dim=2)
    with pytest.raises(ValueError, match="N item ids"):
        fit_learned_whitening(x, items[:-1], dim=2)


def _tiny(appearance_weight=0.5):
    """A tiny model whose descriptor is fusion, appearance and landmark windows (no colours, no detail windows)."""
    torch.manual_seed(0)
    return create_model(FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=96, appearance_weight=appearance_weight,
                                         colour_window=0.0, detail_window=0.0)).eval()


def _whitened_tiny(appearance_weight=0.5, dim=6):
    model = _tiny(appearance_weight)
    mean, projection = torch.randn(model.descriptor_dim) * 0.01, torch.randn(model.descriptor_dim, dim)
    model.set_whitening(mean, projection)
    return model, mean, projection


def test_the_model_embeds_with_the_installed_whitening():
    model, mean, projection = _whitened_tiny()
    assert model.config.whiten_dim == 6 and model.search_dim == 6
    with torch.no_grad():
        out = model(torch.randn(2, 3, 96, 96))
    whitened = apply_whitening(out["descriptor"].numpy(), mean.numpy(), projection.numpy())
    embedding = out["embedding"].numpy()
    assert embedding.shape == (2, model.search_dim)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embedding, whitened, atol=1e-5)


def test_the_descriptor_is_fusion_appearance_and_every_landmark_window():
    model = _tiny()
    windows = 8 * model.trunk_channels * model.config.pool_output**2
    assert model.descriptor_dim == 16 + model.appearance_dim + windows
    with torch.no_grad():
        out = model(torch.rand(2, 3, 96, 96), with_descriptor=True)
    parts = torch.split(out["descriptor"], [16, model.appearance_dim, windows], dim=1)
    for part in parts:  # each part L2-normalised, so none outweighs another by its scale
        np.testing.assert_allclose(part.norm(dim=1).numpy(), 1.0, atol=1e-5)
    torch.testing.assert_close(parts[0], torch.nn.functional.normalize(out["fusion_feature"], dim=1))


def test_a_whitening_that_does_not_fit_the_descriptor_is_refused():
    model = create_model(FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=96))
    with pytest.raises(ValueError, match=f"mean \\({model.descriptor_dim},\\)"):
        model.set_whitening(torch.zeros(3), torch.zeros(3, 2))


@pytest.mark.parametrize("flip_average", [True, False])
def test_score_parts_of_a_whitened_embedding_add_up(synth_root, flip_average):
    model, *_ = _whitened_tiny()
    predictor = Predictor(model, model.config, {"categories": [], "attributes": []}, {"image_size": 96}, "test", device="cpu",
                          fold_batch_norms=False, flip_average=flip_average, runtime="torch")
    photos = sorted((synth_root / "consumer2shop").glob("img/*/*/*/*.jpg"))[:4]
    embeddings = np.stack([p.embedding for p in predictor.predict_batch(photos)])
    assert embeddings.shape[1] == predictor.embedding_dim == model.search_dim
    parts = predictor.score_parts(embeddings[0], photos[1:])
    assert {"global", "local", "bias", "appearance"} == set(parts[0])
    np.testing.assert_allclose([sum(p.values()) for p in parts], embeddings[1:] @ embeddings[0], atol=1e-4)


def test_fit_whitening_script_writes_a_new_checkpoint_and_keeps_the_old(tiny_checkpoint, synth_root, tmp_path, capsys):
    before = tiny_checkpoint.read_bytes()
    out = tmp_path / "whitened.pt"
    fit_whitening.main(["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--dim", "4", "--augmented-views", "1",
                        "--data-root", str(synth_root / "consumer2shop"), "--no-progress"])
    assert tiny_checkpoint.read_bytes() == before
    ckpt = load_checkpoint(out)
    model, config = model_from_checkpoint(ckpt, out)
    assert config.whiten_dim == 4 and ckpt["model_checksum"] != load_checkpoint(tiny_checkpoint)["model_checksum"]
    assert model.whiten_projection.abs().sum() > 0
    assert "learned whitening" in capsys.readouterr().out
    predictor = Predictor.from_checkpoint(out, device="cpu", runtime="torch")
    photo = sorted((synth_root / "consumer2shop").glob("img/*/*/*/*.jpg"))[0]
    assert predictor.predict(photo).embedding.shape == (4,)
    with pytest.raises(SystemExit, match="give a new path"):
        fit_whitening.main(["--checkpoint", str(tiny_checkpoint), "--out", str(tiny_checkpoint)])
    with pytest.raises(SystemExit, match="below the"):
        fit_whitening.main(["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--dim", "500",
                            "--data-root", str(synth_root / "consumer2shop"), "--no-progress"])


def test_training_fits_the_whitening_and_a_finished_run_resumes(synth_root, tmp_path, capsys):
    out = tmp_path / "run"
    common = [*TINY_TRAIN_ARGS, "--data-root", str(synth_root / "consumer2shop"), "--output-dir", str(out),
              "--batches-per-epoch", "2", "--ood-images", "0", "--whiten-dim", "4", "--colour-window", "0.1", "--whiten-by-part"]
    train_main([*common, "--joint-epochs", "1"])
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["model_config"]["whiten_dim"] == 4
    assert ckpt["model_config"]["whiten_by_part"] and ckpt["model"]["whiten_groups"].sum(dim=0).tolist() == [2, 1, 1]
    model, _ = model_from_checkpoint(ckpt, out / "checkpoint.pt")
    assert model.colour_dim and model.whiten_projection[-model.colour_dim:].abs().sum() > 0  # fitted with the landmark colours
    assert "learned whitening" in capsys.readouterr().out
    train_main([*common, "--joint-epochs", "2", "--resume", "auto"])  # the fitted whitening does not block a resume
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 3
    assert load_checkpoint(out / "checkpoint.pt")["model_config"]["whiten_dim"] == 4
