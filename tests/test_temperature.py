"""Category probabilities are calibrated on held-out photos by one temperature."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fashionnet.calibration.temperature import expected_calibration_error, fit_temperature, negative_log_likelihood
from fashionnet.inference.predictor import Predictor
from fashionnet.models.checkpoint import atomic_torch_save, load_checkpoint


def _logits(n: int, sharpness: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a 5-class problem, made over- or under-confident by ``sharpness``.

    Each class score is unit Gaussian noise plus 1.5 for the true class; the exact posterior's logits
    are then 1.5 x the scores, so with ``sharpness`` s the calibrating temperature is s."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, n)
    scores = rng.normal(size=(n, 5))
    scores[np.arange(n), labels] += 1.5
    return 1.5 * scores * sharpness, labels


@pytest.mark.parametrize("sharpness", [4.0, 0.3])
def test_the_fitted_temperature_undoes_over_and_under_confidence(sharpness):
    logits, labels = _logits(4000, sharpness, seed=0)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(sharpness, rel=0.15)  # the scale the logits were inflated by
    assert negative_log_likelihood(logits, labels, temperature) < negative_log_likelihood(logits, labels, 1.0)
    before = expected_calibration_error(torch.softmax(torch.as_tensor(logits), 1).numpy(), labels)
    after = expected_calibration_error(torch.softmax(torch.as_tensor(logits) / temperature, 1).numpy(), labels)
    assert after < before and after < 0.03


def test_unknown_labels_are_left_out_and_too_few_photos_are_refused():
    logits, labels = _logits(200, 3.0, seed=1)
    with_unknown = labels.copy()
    with_unknown[::2] = -1
    assert fit_temperature(logits, with_unknown) == pytest.approx(fit_temperature(logits[1::2], labels[1::2]), rel=1e-6)
    with pytest.raises(ValueError, match="at least 8 labelled photos"):
        fit_temperature(logits[:5], labels[:5])


def test_training_stores_a_temperature_and_the_predictor_divides_by_it(tiny_checkpoint, synth_root, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    assert 0.05 <= ckpt["category_temperature"] <= 20
    ckpt["category_temperature"] = 3.0
    hot = tmp_path / "hot.pt"
    atomic_torch_save(ckpt, hot)
    photo = next((synth_root / "consumer2shop" / "img").rglob("*.jpg"))
    # without the clothes-type prior, which multiplies in after the temperature
    plain = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch", type_prior=None)
    plain.category_temperature = 1.0
    scaled = Predictor.from_checkpoint(hot, device="cpu", runtime="torch", type_prior=None)
    p1, p3 = plain.predict(photo), scaled.predict(photo)
    assert p1.category == p3.category  # a temperature never changes the ranking
    logits = torch.log(torch.tensor([p1.category_scores[c] for c in plain.category_names]))
    expected = torch.softmax(logits / 3.0, dim=0)
    np.testing.assert_allclose([p3.category_scores[c] for c in scaled.category_names], expected.numpy(), atol=1e-5)
    assert p3.category_prob < p1.category_prob
