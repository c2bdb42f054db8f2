"""Held-out photos for an index's close-match score (indexer.close_match), stored in the checkpoint.

Every search returns its k nearest shop items, so a photo of something a catalogue does not hold
still gets a full page. Whether the best of them is close enough to trust depends on the catalogue,
which only the index knows, and on how this model scores a photo of an item against that item's
shop photos, which only photos the model never trained on can tell. The checkpoint carries the
latter: each held-out consumer photo's search embedding (made as a query's is) and its best score
against its own item's shop photos (the positive pair). An index built from the checkpoint pairs
them with the negatives of its own catalogue (docs/experiments/close_match.md).

Stored under ``"close_match"`` as plain tensors, so ``torch.load(weights_only=True)`` reads it;
written at the end of training, or by ``scripts/fit_close_match.py`` for an existing checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

FORMAT = "held_out_positive_pairs_v1"
MIN_PHOTOS = 20  # fewer held-out photos cannot place a 10% quantile (it would be the lowest one or two)


@dataclass
class MatchReference:
    embeddings: np.ndarray  # (n, D) float32: held-out query photos, embedded as queries are
    positives: np.ndarray  # (n,) each photo's best score against its own item's held-out shop photos
    model_checksum: str  # the model that embedded them: another model's scores mean nothing here
    flip_average: bool = True
    gallery_images: int = 0  # shop photos the positives were searched among

    def __post_init__(self):
        self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
        self.positives = np.asarray(self.positives, dtype=np.float64)
        if self.embeddings.ndim != 2 or self.positives.shape != (len(self.embeddings),):
            raise ValueError(f"shapes do not fit: embeddings {self.embeddings.shape}, positives {self.positives.shape}")

    def __len__(self) -> int:
        return len(self.positives)

    def to_state(self) -> dict:
        return {"format": FORMAT, "embeddings": torch.from_numpy(self.embeddings), "positives": torch.from_numpy(self.positives),
                "model_checksum": self.model_checksum, "flip_average": bool(self.flip_average),
                "gallery_images": int(self.gallery_images)}

    @classmethod
    def from_state(cls, state: Mapping) -> "MatchReference":
        if state.get("format") != FORMAT:
            raise ValueError(f"unknown close-match reference {state.get('format')!r} (this version reads {FORMAT!r})")
        return cls(np.asarray(state["embeddings"]), np.asarray(state["positives"]), str(state["model_checksum"]),
                   bool(state.get("flip_average", True)), int(state.get("gallery_images", 0)))


def positive_scores(queries: np.ndarray, query_items: Sequence, gallery: np.ndarray, gallery_items: Sequence) -> np.ndarray:
    """Each query's best score against the gallery images of its own item (NaN where it has none)."""
    query_items, gallery_items = np.asarray(query_items, dtype=object), np.asarray(gallery_items, dtype=object)
    scores = np.asarray(queries, np.float32) @ np.asarray(gallery, np.float32).T
    own = query_items[:, None] == gallery_items[None, :]
    return np.where(own.any(axis=1), np.where(own, scores, -np.inf).max(axis=1), np.nan)


def _embed(predictor, paths: list[str], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, kept) of the readable photos, through the predictor's query path."""
    from fashionnet.data.images import ImageLoadError

    embeddings, kept = [], []
    for start in range(0, len(paths), batch_size):
        batch = paths[start:start + batch_size]
        try:
            embeddings += list(predictor.embed_photos(batch))
            kept += [True] * len(batch)
        except ImageLoadError:  # one bad file: the rest of the batch one by one
            for path in batch:
                try:
                    embeddings.append(predictor.embed_photos([path])[0])
                    kept.append(True)
                except ImageLoadError:
                    kept.append(False)
    dim = predictor.embedding_dim
    return (np.stack(embeddings) if embeddings else np.zeros((0, dim), np.float32)), np.array(kept, dtype=bool)


def fit_match_reference(predictor, queries: pd.DataFrame, gallery: pd.DataFrame, root: str | Path,
                        batch_size: int = 32) -> MatchReference:
    """Embed held-out ``queries`` and ``gallery`` photos (frames with image_path relative to ``root``
    and item_id) with ``predictor`` (a fashionnet.inference Predictor) and keep each query that has
    its item among the gallery photos, with its positive score."""
    root = Path(root)
    gallery = gallery[gallery["item_id"].isin(set(queries["item_id"]))].drop_duplicates("image_path")
    queries = queries[queries["item_id"].isin(set(gallery["item_id"]))].drop_duplicates("image_path")
    if len(queries) < MIN_PHOTOS:
        raise ValueError(f"need at least {MIN_PHOTOS} held-out query photos whose item has held-out shop photos, got {len(queries)}")
    q, q_kept = _embed(predictor, [str(root / p) for p in queries["image_path"]], batch_size)
    g, g_kept = _embed(predictor, [str(root / p) for p in gallery["image_path"]], batch_size)
    positives = positive_scores(q, queries["item_id"].to_numpy()[q_kept], g, gallery["item_id"].to_numpy()[g_kept])
    usable = np.isfinite(positives)
    if usable.sum() < MIN_PHOTOS:
        raise ValueError(f"only {int(usable.sum())} held-out photos could be read with their shop photos; need {MIN_PHOTOS}")
    return MatchReference(q[usable], positives[usable], predictor.model_checksum, predictor.flip_average, int(g_kept.sum()))


def store_match_reference(ckpt_path: str | Path, predictor, queries: pd.DataFrame, gallery: pd.DataFrame, root: str | Path,
                          batch_size: int = 32) -> MatchReference | None:
    """Fit the reference with ``predictor`` (made from the checkpoint at ``ckpt_path``) and add it to
    that checkpoint; prints what it stored, or why it stored none."""
    from fashionnet.models.checkpoint import atomic_torch_save, load_checkpoint

    try:
        reference = fit_match_reference(predictor, queries, gallery, root, batch_size)
    except ValueError as exc:
        print(f"no close-match reference stored: {exc}", flush=True)
        return None
    ckpt = load_checkpoint(ckpt_path)
    if ckpt["model_checksum"] != reference.model_checksum:
        raise ValueError(f"{ckpt_path} holds model {ckpt['model_checksum']}, but the photos were embedded by {reference.model_checksum}")
    ckpt["close_match"] = reference.to_state()
    atomic_torch_save(ckpt, ckpt_path)
    q10, q50 = np.quantile(reference.positives, [0.1, 0.5])
    print(f"close-match reference: {len(reference)} held-out photos against {reference.gallery_images} shop photos; "
          f"their own item's best score: median {q50:.3f}, 10th percentile {q10:.3f}", flush=True)
    return reference
