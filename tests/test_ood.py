"""The out-of-distribution check: plain, noise and non-garment images are flagged, garment photos are not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fashionnet.calibration.ood import FeatureDensity, fit_density, ledoit_wolf, non_garment_probes
from fashionnet.inference.predictor import Predictor
from fashionnet.models.checkpoint import load_checkpoint


def _gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.linspace(0.2, 3.0, d)  # unequal variances: a Euclidean distance would get these wrong
    return rng.normal(size=(n, d)) * scales + shift


def test_density_scores_about_one_inside_and_far_more_outside():
    density = fit_density(_gaussian(2000, 16, seed=0), held_out=_gaussian(4000, 16, seed=1))
    inside = density.score(_gaussian(2000, 16, seed=2))
    assert 0.8 < np.median(inside) < 1.2
    assert (inside > density.threshold).mean() < 0.01
    # a shift of two units along the tightest direction (std 0.2) is far; along the widest (std 3) it is not
    tight, wide = np.zeros(16), np.zeros(16)
    tight[0], wide[-1] = 2.0, 2.0
    assert density.score(tight[None] + density.mean)[0] > 1.5 > 0.5 > density.score(wide[None] + density.mean)[0]
    assert density.unfamiliar(_gaussian(200, 16, seed=3, shift=4.0)).all()


def test_shrinkage_keeps_the_covariance_invertible_with_fewer_images_than_features():
    x = _gaussian(20, 64, seed=4)
    covariance, shrinkage = ledoit_wolf(x - x.mean(axis=0))
    assert 0 < shrinkage <= 1 and np.linalg.cond(covariance) < 1e4
    with pytest.raises(ValueError, match="at least 16"):
        fit_density(x[:10])
    with pytest.raises(ValueError, match="NaN"):
        fit_density(np.full((20, 4), np.nan))


def test_density_round_trips_through_a_checkpoint_safe_state(tmp_path):
    density = fit_density(_gaussian(100, 8, seed=5))
    path = tmp_path / "state.pt"
    torch.save({"ood": density.to_state()}, path)
    again = FeatureDensity.from_state(torch.load(path, weights_only=True)["ood"])
    x = _gaussian(10, 8, seed=6)
    np.testing.assert_allclose(again.score(x), density.score(x), rtol=1e-5)
    assert again.threshold == pytest.approx(density.threshold)
    with pytest.raises(ValueError, match="unknown density feature"):
        FeatureDensity.from_state({**density.to_state(), "feature": "something else"})


@pytest.fixture(scope="module")
def tiny_predictor(tiny_checkpoint) -> Predictor:
    return Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch")


def test_training_stores_a_calibrated_density_in_the_checkpoint(tiny_checkpoint, tiny_predictor, synth_root):
    state = load_checkpoint(tiny_checkpoint)["ood"]
    assert state["fitted_on"] >= 16 and state["calibrated_on"] > 0 and np.isfinite(state["threshold"])
    assert tiny_predictor.density is not None and tiny_predictor.density.threshold == pytest.approx(state["threshold"])
    # even the briefly trained toy model, fitted on a couple of dozen photos, finds flat colour less
    # familiar than garment photos it never saw (the shipped trunk's flag rates: the tests below)
    plain = tiny_predictor.predict_batch(non_garment_probes(n_per_kind=10, seed=11)["plain"])
    garments = sorted((synth_root / "consumer2shop" / "img").rglob("*.jpg"))[:20]
    garment_scores = [p.unfamiliarity for p in tiny_predictor.predict_batch(garments)]
    assert np.median([p.unfamiliarity for p in plain]) > 2 * np.median(garment_scores)


@pytest.fixture(scope="module")
def small_synth_root(tmp_path_factory) -> Path:
    """The "small" synthetic benchmark (about 900 photos): the photographic styles vary too much for
    a density fitted on the few dozen photos of the tiny one."""
    from fashionnet.data.synthetic import generate_synthetic_deepfashion

    root = tmp_path_factory.mktemp("synth_small") / "synth"
    generate_synthetic_deepfashion(root, size="small", seed=3, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def imagenet_predictor(small_synth_root) -> tuple[Predictor, pd.DataFrame, Path]:
    """A FashionNet on the ImageNet EfficientNet-Lite0 trunk (which the shipped models use), with its
    density fitted on the small benchmark's training photos, the validation photos setting the threshold."""
    from fashionnet.calibration.ood import calibrate_on_frames
    from fashionnet.models import FashionNetConfig, create_model
    from fashionnet.training.data import read_training_frames

    config = FashionNetConfig(backbone="efficientnet_lite0", pretrained=True, image_size=96, embedding_dim=32,
                              num_categories=0, num_attributes=0)
    predictor = Predictor(create_model(config), config, {}, {"image_size": 96}, "imagenet-trunk", device="cpu", runtime="torch")
    frame, root, _ = read_training_frames([small_synth_root / "consumer2shop", small_synth_root / "inshop"])
    predictor.density = calibrate_on_frames(predictor.model, frame[frame["split"] == "train"], frame[frame["split"] == "val"],
                                            root, 96, torch.device("cpu"))
    return predictor, frame, root


def test_non_garment_images_are_flagged(imagenet_predictor):
    predictor, _, _ = imagenet_predictor
    for kind, images in non_garment_probes(n_per_kind=10, seed=11).items():
        predictions = predictor.predict_batch(images)
        share = np.mean([p.unfamiliar for p in predictions])
        assert share >= 0.9, f"only {share:.0%} of the {kind} images were flagged"


def test_test_split_garment_photos_are_not_flagged(imagenet_predictor):
    predictor, frame, root = imagenet_predictor
    test = frame[frame["split"].isin(["test", "query", "gallery"])]
    photos = [str(root / p) for p in test["image_path"]]
    predictions = predictor.predict_batch(photos)
    flagged = [p for p, pred in zip(photos, predictions) if pred.unfamiliar]
    # new items of the small benchmark at 96 px against a threshold set on about a hundred held-out
    # photos of other items: allow 8% (a miss here is a false alarm, not a refusal; at full size the
    # demo model flags 1 of 600 test photos, docs/experiments/unfamiliar_photos.md)
    assert len(photos) > 150 and len(flagged) <= 0.08 * len(photos), (len(flagged), len(photos), flagged[:5])
    assert isinstance(predictions[0].as_dict()["unfamiliar"], bool)


def test_a_checkpoint_without_a_density_reports_none(tiny_checkpoint, tmp_path):
    from fashionnet.models.checkpoint import atomic_torch_save

    ckpt = load_checkpoint(tiny_checkpoint)
    ckpt.pop("ood")
    old = tmp_path / "old.pt"
    atomic_torch_save(ckpt, old)
    prediction = Predictor.from_checkpoint(old, device="cpu", runtime="torch").predict(non_garment_probes(1)["plain"][0])
    assert prediction.unfamiliar is None and prediction.unfamiliarity is None
