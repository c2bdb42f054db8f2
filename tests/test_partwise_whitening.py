"""Whitening part by part (FashionNetConfig.whiten_by_part): each part of the descriptor (appearance,
landmark windows, landmark colours) is whitened alone and has the same say in the score, so a
small part that tells siblings apart is not drowned by a large one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fashionnet.calibration.whitening import apply_whitening, fit_learned_whitening, fit_partwise_whitening
from fashionnet.inference.predictor import Predictor
from fashionnet.models import FashionNetConfig, create_model
from fashionnet.models.checkpoint import load_checkpoint, model_from_checkpoint, state_dict_checksum
from tests.conftest import load_script

fit_whitening = load_script("fit_whitening")

BIG, SMALL = 120, 6


def _families(rng, families, size=4, photos=4):
    """Descriptors of families of ``size`` siblings: a big part (the family's look, which the camera
    moves a lot) and a small part (the detail that tells siblings apart, which it barely moves)."""
    look = np.repeat(rng.normal(size=(families, BIG)), size * photos, axis=0)
    detail = np.repeat(rng.normal(size=(families * size, SMALL)), photos, axis=0)
    n = families * size * photos
    x = np.concatenate([look + rng.normal(size=(n, BIG)), 0.3 * detail + 0.05 * rng.normal(size=(n, SMALL))], axis=1)
    return x + 2.0, np.repeat(np.arange(families * size), photos)


def _top1(q, q_items, g, g_items):
    return float(np.mean(g_items[np.argmax(q @ g.T, axis=1)] == q_items))


def test_a_small_part_that_tells_siblings_apart_is_heard():
    rng = np.random.default_rng(0)
    x, items = _families(rng, 12)
    mean, projection = fit_learned_whitening(x, items, dim=8)
    p_mean, p_projection, groups = fit_partwise_whitening(x, items, [slice(0, BIG), slice(BIG, BIG + SMALL)], dim=8)
    test_x, test_items = _families(rng, 10, photos=2)  # new items: one photo of each queries the other
    q, g, q_items, g_items = test_x[::2], test_x[1::2], test_items[::2], test_items[1::2]
    whole = _top1(apply_whitening(q, mean, projection), q_items, apply_whitening(g, mean, projection), g_items)
    by_part = _top1(apply_whitening(q, p_mean, p_projection, groups), q_items, apply_whitening(g, p_mean, p_projection, groups), g_items)
    assert whole < 0.3 and by_part > 0.45, (whole, by_part)


def test_each_part_is_whitened_alone_and_has_the_same_say():
    rng = np.random.default_rng(1)
    x, items = _families(rng, 10)
    parts = [slice(10, 60), slice(60, BIG), slice(BIG, BIG + SMALL)]  # entries 0-9 are in no part
    mean, projection, groups = fit_partwise_whitening(x, items, parts, dim=8)
    assert groups.sum(axis=0).tolist() == [3, 3, 2] and (groups.sum(axis=1) == 1).all()
    assert not projection[:10].any() and not mean[:10].any()  # not read
    first = 0
    for part, size in zip(parts, (3, 3, 2)):
        alone_mean, alone_projection = fit_learned_whitening(x[:, part], items, size)
        np.testing.assert_allclose(mean[part], alone_mean, atol=1e-5)
        np.testing.assert_allclose(projection[part, first:first + size], alone_projection, atol=1e-5)
        assert not np.delete(projection[:, first:first + size], np.arange(part.start, part.stop), axis=0).any()
        first += size
    a, b = apply_whitening(x[:2], mean, projection, groups), apply_whitening(x[2:4], mean, projection, groups)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    for p in range(3):  # each part 1 / sqrt(3) long, and the cosine is the mean of the parts' cosines
        cols = groups[:, p] == 1
        np.testing.assert_allclose(np.linalg.norm(a[:, cols], axis=1), 3 ** -0.5, atol=1e-5)
    z_a, z_b = (x[:2] - mean) @ projection, (x[2:4] - mean) @ projection
    part_cosines = [np.sum(_unit(z_a[:, groups[:, p] == 1]) * _unit(z_b[:, groups[:, p] == 1]), axis=1) for p in range(3)]
    np.testing.assert_allclose(np.sum(a * b, axis=1), np.mean(part_cosines, axis=0), atol=1e-5)


def _unit(v):
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_bad_partwise_fits_name_the_part():
    x, items = _families(np.random.default_rng(0), 3)  # 12 items
    with pytest.raises(ValueError, match="between 1 and dim=2 parts"):
        fit_partwise_whitening(x, items, [slice(0, 10), slice(10, 20), slice(20, 30)], dim=2)
    with pytest.raises(ValueError, match=f"part 2 of 2 \\(descriptor entries {BIG}-{BIG + 1}\\).*exceeds"):
        fit_partwise_whitening(x, items, [slice(0, BIG), slice(BIG, BIG + 2)], dim=8)


def _tiny(colour_window=0.1, appearance_weight=0.5):
    torch.manual_seed(0)
    return create_model(FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=96, appearance_weight=appearance_weight,
                                         colour_window=colour_window, detail_window=0.0)).eval()


@pytest.mark.parametrize("colour_window, appearance_weight", [(0.1, 0.5), (0.0, 0.0)])
def test_the_parts_are_appearance_windows_and_colours(colour_window, appearance_weight):
    model = _tiny(colour_window, appearance_weight)
    parts = model.whitening_parts()
    expected = [model.appearance_dim or 16, model.windows_dim] + ([model.colour_dim] if model.colour_dim else [])
    assert [p.stop - p.start for p in parts] == expected == [e for e in expected if e]
    assert len(parts) == model.config.whitening_part_count
    assert parts[-1].stop == model.descriptor_dim and all(a.stop == b.start for a, b in zip(parts, parts[1:]))
    assert parts[0].start == (16 if appearance_weight else 0)  # the fusion is read only where there is no appearance


def test_the_model_embeds_part_by_part_and_an_index_can_tell():
    model = _tiny()
    torch.manual_seed(1)
    mean, projection = torch.randn(model.descriptor_dim) * 0.01, torch.randn(model.descriptor_dim, 7)
    model.set_whitening(mean, projection)
    whole = state_dict_checksum(model.state_dict())
    groups = torch.zeros(7, 3)
    groups[[0, 1, 2], 0] = groups[[3, 4], 1] = groups[[5, 6], 2] = 1
    model.set_whitening(mean, projection, groups=groups)
    assert model.config.whiten_by_part and state_dict_checksum(model.state_dict()) != whole
    with torch.no_grad():
        out = model(torch.rand(3, 3, 96, 96))
    expected = apply_whitening(out["descriptor"].numpy(), mean.numpy(), projection.numpy(), groups.numpy())
    np.testing.assert_allclose(out["embedding"].numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="one-hot \\(7, 3\\)"):
        model.set_whitening(mean, projection, groups=torch.ones(7, 3))
    with pytest.raises(ValueError, match="one-hot \\(7, 3\\)"):
        model.set_whitening(mean, projection, groups=torch.eye(2).repeat(4, 1)[:7])
    with pytest.raises(ValueError, match="below the 3 parts"):
        FashionNetConfig(colour_window=0.1, detail_window=0.0, whiten_dim=2, whiten_by_part=True)
    model.set_whitening(mean, projection)  # back to one whitening: the groups go
    assert not model.config.whiten_by_part and "whiten_groups" not in model.state_dict()
    assert state_dict_checksum(model.state_dict()) == whole


def test_score_parts_add_up_part_by_part(synth_root):
    model = _tiny()
    torch.manual_seed(2)
    model.set_whitening(torch.randn(model.descriptor_dim) * 0.01, torch.randn(model.descriptor_dim, 6),
                        groups=torch.eye(3).repeat_interleave(2, dim=0))
    predictor = Predictor(model, model.config, {"categories": [], "attributes": []}, {"image_size": 96}, "test", device="cpu",
                          fold_batch_norms=False, runtime="torch")
    photos = sorted((synth_root / "consumer2shop").glob("img/*/*/*/*.jpg"))[:4]
    embeddings = np.stack([p.embedding for p in predictor.predict_batch(photos)])
    parts = predictor.score_parts(embeddings[0], photos[1:])
    np.testing.assert_allclose([sum(p.values()) for p in parts], embeddings[1:] @ embeddings[0], atol=1e-4)


def test_fit_whitening_script_whitens_by_part_and_a_refit_keeps_it(tiny_checkpoint, synth_root, tmp_path, capsys):
    out, again, whole = tmp_path / "by_part.pt", tmp_path / "again.pt", tmp_path / "whole.pt"
    common = ["--dim", "6", "--colour-window", "0.1", "--data-root", str(synth_root / "consumer2shop"), "--no-progress"]
    fit_whitening.main(["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--by-part", *common])
    assert "in 3 parts of 2, 2, 2" in capsys.readouterr().out
    model, config = model_from_checkpoint(load_checkpoint(out), out)
    assert config.whiten_by_part and load_checkpoint(out)["args"]["whiten_by_part"] is True
    for p, part in enumerate(model.whitening_parts()):  # each part's dimensions read that part alone
        cols = model.whiten_groups[:, p] == 1
        assert model.whiten_projection[part][:, cols].abs().sum() > 0
        assert model.whiten_projection[:, cols].abs().sum() == pytest.approx(model.whiten_projection[part][:, cols].abs().sum())
    photo = sorted((synth_root / "consumer2shop").glob("img/*/*/*/*.jpg"))[0]
    assert Predictor.from_checkpoint(out, device="cpu", runtime="torch").predict(photo).embedding.shape == (6,)
    fit_whitening.main(["--checkpoint", str(out), "--out", str(again), *common])
    assert model_from_checkpoint(load_checkpoint(again), again)[1].whiten_by_part
    fit_whitening.main(["--checkpoint", str(out), "--out", str(whole), "--no-by-part", *common])
    assert not model_from_checkpoint(load_checkpoint(whole), whole)[1].whiten_by_part
    with pytest.raises(SystemExit, match="parts"):
        fit_whitening.main(["--checkpoint", str(out), "--out", str(again), "--by-part", "--dim", "2", *common[2:]])
