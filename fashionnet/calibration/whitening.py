"""Learned whitening of the search descriptor: the projection that tells siblings apart.

Items of one family share everything but small details at their landmarks, so most of the
descriptor's variance is what siblings have in common and what the camera changes from photo
to photo. Learned whitening (Mikolajczyk & Matas, ICCV 2007; Radenovic et al., TPAMI 2018)
measures, on training photos, how photos of *one* item vary (within-item covariance), whitens that
away, and keeps the directions along which items differ most. Directions that a detail moves and
the camera does not are thereby scaled up, whatever branch of the network they come from.

The descriptor is [fusion, appearance, every pooled landmark window, and where the model has them
the image's colours around each landmark] (``FashionNet``'s ``descriptor`` output). The fit is closed-form: a few seconds after one pass over the training photos.

Part by part (:func:`fit_partwise_whitening`, ``FashionNetConfig.whiten_by_part``): a few hundred
training items cannot pin down one whitening of thousands of dimensions, and the largest part then
drowns the small ones (216 colour numbers beside 3,584 window numbers). Whitening each part alone
and giving each part's cosine the same say keeps every part heard.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fashionnet.data.dataset import DeepFashionDataset, collate_skip_none
from fashionnet.data.transforms import build_transforms

DEFAULT_DIM = 128
# FashionNet's state-dict entries that hold an installed whitening
WHITENING_BUFFERS = ("whiten_mean", "whiten_projection", "whiten_groups")
DEFAULT_SHRINKAGE = 0.5
DEFAULT_AUGMENTED_VIEWS = 1


def fit_learned_whitening(descriptors: np.ndarray, items: np.ndarray, dim: int = DEFAULT_DIM,
                          shrinkage: float = DEFAULT_SHRINKAGE) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), projection (D, dim)) such that normalise((x - mean) @ projection) is the whitened embedding.

    descriptors: (N, D) training photos; items: (N,) their item ids (any hashable labels).
    ``shrinkage`` in [0, 1) pulls the within-item covariance towards its mean variance (a few
    thousand photos cannot pin down thousands of dimensions); ``dim`` must be below the number of items.
    """
    x = np.asarray(descriptors, dtype=np.float64)
    items = np.asarray(items)
    if x.ndim != 2 or len(x) != len(items):
        raise ValueError(f"expected (N, D) descriptors and N item ids, got {x.shape} and {items.shape}")
    if not 0 <= shrinkage < 1:
        raise ValueError(f"shrinkage must be in [0, 1), got {shrinkage}")
    _, label = np.unique(items, return_inverse=True)
    counts = np.bincount(label)
    if (counts >= 2).sum() < 2:
        raise ValueError(f"learned whitening needs at least 2 items with 2 or more photos each; got {int((counts >= 2).sum())}")
    if not 1 <= dim < len(counts):
        raise ValueError(f"whitening dimension must be in [1, {len(counts) - 1}] (below the {len(counts)} training items), got {dim}")
    if dim > x.shape[1]:
        raise ValueError(f"whitening dimension {dim} exceeds the descriptor's {x.shape[1]}")
    mean = x.mean(axis=0)
    centred = x - mean
    item_means = np.zeros((len(counts), x.shape[1]))
    np.add.at(item_means, label, centred)
    item_means /= counts[:, None]
    within = centred - item_means[label]
    within_cov = within.T @ within / max(1, int((counts - 1).sum()))
    within_cov = (1 - shrinkage) * within_cov + shrinkage * np.trace(within_cov) / len(within_cov) * np.eye(len(within_cov))
    values, vectors = np.linalg.eigh(within_cov)
    whiten = (vectors / np.sqrt(np.clip(values, 1e-12, None))) @ vectors.T
    between = item_means @ whiten
    values, vectors = np.linalg.eigh(between.T @ between / len(between))
    keep = vectors[:, np.argsort(values)[::-1][:dim]]
    return mean.astype(np.float32), (whiten @ keep).astype(np.float32)


def fit_partwise_whitening(descriptors: np.ndarray, items: np.ndarray, parts: Sequence[slice], dim: int = DEFAULT_DIM,
                           shrinkage: float = DEFAULT_SHRINKAGE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (D,), projection (D, dim), groups (dim, P)): :func:`fit_learned_whitening` of each of the
    P ``parts`` (slices of the descriptor) alone, the ``dim`` whitened dimensions shared among them
    as evenly as they go; ``groups`` says which part each dimension belongs to (one-hot). Descriptor
    entries in no part get zero rows: they are not read."""
    x = np.asarray(descriptors, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected (N, D) descriptors, got {x.shape}")
    if not parts or not 1 <= len(parts) <= dim:
        raise ValueError(f"need between 1 and dim={dim} parts, got {len(parts)}")
    mean = np.zeros(x.shape[1], dtype=np.float32)
    projection = np.zeros((x.shape[1], dim), dtype=np.float32)
    groups = np.zeros((dim, len(parts)), dtype=np.float32)
    first = 0
    for p, (part, size) in enumerate(zip(parts, (len(s) for s in np.array_split(np.arange(dim), len(parts))))):
        try:
            part_mean, part_projection = fit_learned_whitening(x[:, part], items, size, shrinkage)
        except ValueError as exc:
            raise ValueError(f"part {p + 1} of {len(parts)} (descriptor entries {part.start}-{part.stop - 1}): {exc}") from None
        mean[part] = part_mean
        projection[part, first:first + size] = part_projection
        groups[first:first + size, p] = 1
        first += size
    return mean, projection, groups


def apply_whitening(descriptors: np.ndarray, mean: np.ndarray, projection: np.ndarray, groups: Optional[np.ndarray] = None) -> np.ndarray:
    """The whitened, L2-normalised embeddings of (N, D) descriptors (what FashionNet computes in its
    forward); with ``groups`` each part's dimensions are normalised alone, to 1 / sqrt(parts)."""
    z = (np.asarray(descriptors, dtype=np.float32) - mean) @ projection
    if groups is None:
        return z / np.clip(np.linalg.norm(z, axis=1, keepdims=True), 1e-12, None)
    part_norms = np.sqrt(np.clip((z * z) @ groups, 1e-24, None))
    return z / (part_norms @ groups.T) / np.sqrt(groups.shape[1])


@torch.inference_mode()
def training_descriptors(model, frame: pd.DataFrame, root, image_size: int, device, batch_size: int = 64,
                         workers: int = 0, progress: bool = True, augment=None, augmented_views: int = 0,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The model's descriptors of ``frame``'s photos (predicted landmarks) and their item ids: each
    photo as it is, plus ``augmented_views`` passes through the ``augment`` transform (the training
    augmentation), so the within-item covariance also holds what the augmentation varies and the
    whitening learns to ignore it. Unreadable photos are skipped (the dataset names them)."""
    if augmented_views and augment is None:
        raise ValueError("augmented views need the augmentation transform")
    passes = [build_transforms(train=False, size=image_size)] + [augment] * augmented_views
    dataset = DeepFashionDataset(frame, root, passes[0], on_error="skip")
    was_training = model.training
    model.eval()
    rows, items = [], []
    try:
        for view, transform in enumerate(passes):
            torch.manual_seed(seed + view)  # the augmentation draws from torch's generator
            dataset.transform = transform
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_skip_none)
            desc = "whitening descriptors" + (f" (augmented view {view})" if view else "")
            for batch in tqdm(loader, desc=desc, disable=not progress, dynamic_ncols=True, leave=False):
                if batch is None:
                    continue
                rows.append(model(batch["image"].to(device), with_descriptor=True)["descriptor"].float().cpu().numpy())
                items.append(dataset.frame["item_id"].to_numpy()[batch["index"].numpy()])
    finally:
        model.train(was_training)
    if not rows:
        raise ValueError("no readable training photos to fit the whitening on")
    return np.concatenate(rows), np.concatenate(items)


def whiten_model(model, frame: pd.DataFrame, root, image_size: int, device, dim: int = DEFAULT_DIM,
                 shrinkage: float = DEFAULT_SHRINKAGE, augment=None,
                 augmented_views: int = 0, seed: int = 0, batch_size: int = 64, workers: int = 0, progress: bool = True,
                 by_part: bool = False) -> str:
    """Fit the whitening on ``frame``'s training photos and install it in ``model`` (``by_part``: each
    of ``model.whitening_parts()`` alone); returns a line saying what was fitted. Raises ValueError
    (with the reason) when the photos cannot support it."""
    descriptors, items = training_descriptors(model, frame, root, image_size, device, batch_size=batch_size, workers=workers,
                                              progress=progress, augment=augment, augmented_views=augmented_views, seed=seed)
    how = ""
    if by_part:
        parts = model.whitening_parts()
        mean, projection, groups = fit_partwise_whitening(descriptors, items, parts, dim, shrinkage)
        model.set_whitening(torch.from_numpy(mean), torch.from_numpy(projection), torch.from_numpy(groups))
        how = f" in {len(parts)} parts of {', '.join(str(int(n)) for n in groups.sum(axis=0))}"
    else:
        mean, projection = fit_learned_whitening(descriptors, items, dim, shrinkage)
        model.set_whitening(torch.from_numpy(mean), torch.from_numpy(projection))
    return (f"learned whitening: {descriptors.shape[1]} -> {dim} dimensions{how}, fitted on {len(descriptors)} views of "
            f"{len(frame)} training photos of {len(set(items))} items")
