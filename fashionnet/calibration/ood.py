"""Does a photo look like the garment photos the model was trained on? A density of trunk features.

Category and visibility probabilities cannot tell: a softmax is confident about anything, and a
plain or noise image still gets a "most likely" category. What does tell is where the photo's
trunk features fall: photos like the training data land in a compact region; plain colours, noise,
gradients and scenes without garments land far outside it.

:class:`FeatureDensity` is a Gaussian with a Ledoit-Wolf shrunk covariance, fitted on the trunk
statistics of training images (each channel's mean and std at a middle trunk stage, which sees
texture, and at the last, which sees content). A photo's score is its Mahalanobis distance, divided by the square
root of the dimension so that scores read alike across backbones (about 1 for typical training
photos). The threshold is set on held-out photos of the training distribution (by default their
99.5th percentile, times a margin, 1 by default), so almost no garment photo of that distribution is flagged.

The density is stored in the checkpoint under ``"ood"`` (plain tensors, safe to load), written by
training or by ``scripts/calibrate_ood.py`` for an existing checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np
import torch

FEATURE = "trunk_mid_last_mean_std_signed_sqrt"  # what the density is fitted on; see trunk_features()
DEFAULT_QUANTILE = 0.995
DEFAULT_MARGIN = 1.0
MIN_FIT_IMAGES = 16


def trunk_features(trunk_stats: torch.Tensor) -> torch.Tensor:
    """(B, F) features for the density from the model's ``trunk_stats`` output (each channel's
    spatial mean and std at a middle trunk stage and at the last): a signed square root, which
    makes skewed activations closer to Gaussian."""
    x = trunk_stats.float()
    return x.sign() * x.abs().sqrt()


@dataclass
class FeatureDensity:
    mean: np.ndarray  # (D,)
    precision: np.ndarray  # (D, D): inverse of the shrunk covariance
    threshold: float  # scores above it are "unlike the training photos"
    shrinkage: float = 0.0
    fitted_on: int = 0
    calibrated_on: int = 0
    feature: str = FEATURE

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def score(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        """Normalised Mahalanobis distance of each row: about 1 inside the training distribution."""
        x = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
        x = np.atleast_2d(x).astype(np.float64) - self.mean
        if x.shape[1] != self.dim:
            raise ValueError(f"features have {x.shape[1]} dimensions; the density was fitted on {self.dim}")
        squared = np.einsum("nd,de,ne->n", x, self.precision, x)
        return np.sqrt(np.maximum(squared, 0.0) / self.dim)

    def unfamiliar(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        return self.score(features) > self.threshold

    def to_state(self) -> dict:
        """For the checkpoint: tensors and plain numbers only, so ``torch.load(weights_only=True)`` reads it."""
        return {
            "feature": self.feature,
            "mean": torch.from_numpy(self.mean.astype(np.float32)),
            "precision": torch.from_numpy(self.precision.astype(np.float32)),
            "threshold": float(self.threshold),
            "shrinkage": float(self.shrinkage),
            "fitted_on": int(self.fitted_on),
            "calibrated_on": int(self.calibrated_on),
        }

    @classmethod
    def from_state(cls, state: Mapping) -> "FeatureDensity":
        if state.get("feature") != FEATURE:
            raise ValueError(f"unknown density feature {state.get('feature')!r} (this version reads {FEATURE!r})")
        mean = np.asarray(state["mean"], dtype=np.float64)
        precision = np.asarray(state["precision"], dtype=np.float64)
        if mean.ndim != 1 or precision.shape != (mean.shape[0], mean.shape[0]):
            raise ValueError(f"density shapes do not fit: mean {mean.shape}, precision {precision.shape}")
        return cls(mean, precision, float(state["threshold"]), float(state.get("shrinkage", 0.0)),
                   int(state.get("fitted_on", 0)), int(state.get("calibrated_on", 0)))


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Shrunk covariance of centred rows ``x`` (n, d) towards a scaled identity, and the shrinkage.

    Ledoit and Wolf's estimate of the best shrinkage: well conditioned even with fewer images than
    dimensions, which a plain sample covariance is not.
    """
    n, d = x.shape
    sample = x.T @ x / n
    mu = np.trace(sample) / d
    delta = np.sum((sample - mu * np.eye(d)) ** 2) / d
    beta = (np.sum(np.sum(x ** 2, axis=1) ** 2) / n - np.sum(sample ** 2)) / (n * d)
    shrinkage = float(np.clip(beta / delta, 0.0, 1.0)) if delta > 0 else 1.0
    return shrinkage * mu * np.eye(d) + (1.0 - shrinkage) * sample, shrinkage


def fit_density(fit_features: np.ndarray, held_out: Optional[np.ndarray] = None, quantile: float = DEFAULT_QUANTILE,
                margin: float = DEFAULT_MARGIN) -> FeatureDensity:
    """Fit on ``fit_features`` (n, D) and set the threshold on ``held_out`` features of the same
    distribution (default: the fitting features themselves, which under-estimates the spread)."""
    x = np.asarray(fit_features, dtype=np.float64)
    if x.ndim != 2 or len(x) < MIN_FIT_IMAGES:
        raise ValueError(f"need at least {MIN_FIT_IMAGES} feature rows to fit a density, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf")
    mean = x.mean(axis=0)
    covariance, shrinkage = ledoit_wolf(x - mean)
    precision = np.linalg.pinv(covariance, hermitian=True)
    density = FeatureDensity(mean, precision, threshold=np.inf, shrinkage=shrinkage, fitted_on=len(x))
    reference = x if held_out is None or len(held_out) == 0 else np.asarray(held_out, dtype=np.float64)
    density.threshold = float(np.quantile(density.score(reference), quantile) * margin)
    density.calibrated_on = len(reference)
    return density


@torch.inference_mode()
def dataset_features(model: torch.nn.Module, dataset, device: torch.device, batch_size: int = 32, workers: int = 0,
                     progress: bool = False, desc: str = "trunk features") -> np.ndarray:
    """Density features of every readable image of a :class:`~fashionnet.data.dataset.DeepFashionDataset`."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from fashionnet.data.dataset import collate_skip_none

    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_skip_none)
    parts = []
    try:
        for batch in tqdm(loader, desc=desc, disable=not progress, dynamic_ncols=True, leave=False):
            if batch is not None:
                parts.append(trunk_features(model(batch["image"].to(device))["trunk_stats"]).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(parts) if parts else np.empty((0, 0), np.float32)


def split_for_calibration(frame, held_out_fraction: float = 0.25, max_images: int = 1200, seed: int = 0):
    """(fit, held_out) frames drawn from ``frame``: held-out photos set the threshold, so it reflects
    photos the density did not see."""
    sample = frame.sample(n=min(len(frame), max_images), random_state=seed) if len(frame) else frame
    n_held = int(round(len(sample) * held_out_fraction))
    return sample.iloc[n_held:], sample.iloc[:n_held]


def calibrate_on_frames(model: torch.nn.Module, train_frame, held_frame, data_root, input_side: int, device: torch.device, *,
                        max_images: int = 1200, batch_size: int = 32, workers: int = 0, progress: bool = False,
                        seed: int = 0, quantile: float = DEFAULT_QUANTILE, margin: float = DEFAULT_MARGIN) -> FeatureDensity:
    """Fit the density on up to ``max_images`` training photos, with the threshold set on
    ``held_frame`` (e.g. the validation photos) plus a quarter of the drawn training photos left
    out of the fit. Photos are letterboxed as the Predictor does, without bbox crops."""
    import pandas as pd

    from fashionnet.data.dataset import DeepFashionDataset
    from fashionnet.data.transforms import build_transforms

    fit_frame, spare = split_for_calibration(train_frame, max_images=max_images, seed=seed)
    held = pd.concat([held_frame, spare], ignore_index=True) if len(held_frame) else spare
    transform = build_transforms(train=False, size=input_side)

    def features(frame, desc):
        dataset = DeepFashionDataset(frame, data_root, transform, category_labels={}, on_error="skip")
        return dataset_features(model, dataset, device, batch_size=batch_size, workers=workers, progress=progress, desc=desc)

    return fit_density(features(fit_frame, "density: fitting photos"), features(held, "density: held-out photos"), quantile, margin)


def non_garment_probes(n_per_kind: int = 20, size: tuple[int, int] = (240, 320), seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Photos that show no garment, to measure how often the check flags them: plain colours,
    noise (white and blurred), gradients and tiled geometric patterns. (width, height) = ``size``."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    probes: dict[str, list[np.ndarray]] = {"plain": [], "noise": [], "gradient": [], "pattern": []}
    for _ in range(n_per_kind):
        probes["plain"].append(np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (h, w, 3)).copy())
        noise = rng.integers(0, 256, (h, w, 3)).astype(np.float32)
        if rng.random() < 0.5:  # blurred noise: blotches instead of pixel grain
            small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3)).astype(np.float32)
            noise = np.kron(small, np.ones((16, 16, 1), np.float32))[:h, :w]
        probes["noise"].append(noise.astype(np.uint8))
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        probes["gradient"].append((a + (b - a) * t[..., None]).astype(np.uint8))
        period = rng.integers(8, 48)
        if rng.random() < 0.5:
            mask = ((xx // period + yy // period) % 2)[..., None]
        else:
            mask = (np.sin(xx / period * 2 * np.pi + rng.uniform(0, 6)) * np.sin(yy / period * 2 * np.pi) > 0)[..., None]
        probes["pattern"].append(np.where(mask, a, b).astype(np.uint8))
    return probes
