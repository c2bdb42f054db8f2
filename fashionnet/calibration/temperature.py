"""Category probabilities that mean what they say: temperature scaling on held-out photos.

A network trained with cross-entropy is usually over-confident: it says 98% where it is right far
less often. Dividing its logits by one temperature T, chosen to minimise the negative
log-likelihood of held-out photos, keeps every ranking and makes the probabilities honest on
photos like those. Training fits T on its validation photos and stores it in the checkpoint
(``category_temperature``); the Predictor divides by it.
"""

from __future__ import annotations

import numpy as np
import torch

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
MIN_PHOTOS = 8


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = torch.as_tensor(logits, dtype=torch.float64) / temperature
    return float(torch.nn.functional.cross_entropy(scaled, torch.as_tensor(labels, dtype=torch.long)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the mean NLL of ``softmax(logits / T)`` for ``labels``
    (rows with a label < 0, i.e. unknown, are left out)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    known = labels >= 0
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError(f"need (N, C) logits and N labels, got {logits.shape} and {labels.shape}")
    if known.sum() < MIN_PHOTOS:
        raise ValueError(f"need at least {MIN_PHOTOS} labelled photos to fit a temperature, got {int(known.sum())}")
    x = torch.as_tensor(logits[known])
    y = torch.as_tensor(labels[known])
    # NLL is convex in 1/T, so a search over log T on a fine grid, then a golden-section refinement, finds it
    grid = np.exp(np.linspace(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE), 121))
    losses = [float(torch.nn.functional.cross_entropy(x / t, y)) for t in grid]
    best = int(np.argmin(losses))
    lo, hi = np.log(grid[max(best - 1, 0)]), np.log(grid[min(best + 1, len(grid) - 1)])
    golden = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
        if float(torch.nn.functional.cross_entropy(x / np.exp(a), y)) < float(torch.nn.functional.cross_entropy(x / np.exp(b), y)):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Mean gap between confidence and accuracy over confidence bins, weighted by bin size."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    confidence, predicted = probabilities.max(axis=1), probabilities.argmax(axis=1)
    correct = predicted == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            error += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(error)


@torch.inference_mode()
def dataset_category_logits(model: torch.nn.Module, datasets, device: torch.device, batch_size: int = 32,
                            workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(category logits, category labels) of every readable photo of the given datasets."""
    from torch.utils.data import DataLoader

    from fashionnet.data.dataset import collate_skip_none

    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for dataset in datasets:
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_skip_none)
            for batch in loader:
                if batch is not None:
                    logits.append(model(batch["image"].to(device))["category_logits"].float().cpu().numpy())
                    labels.append(batch["category"].numpy())
    finally:
        model.train(was_training)
    if not logits:
        return np.empty((0, 0)), np.empty(0, np.int64)
    return np.concatenate(logits), np.concatenate(labels)
