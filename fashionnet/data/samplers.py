"""P x K batch sampling for the triplet loss: P distinct items, K images of each, per batch."""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np
from torch.utils.data import Sampler


class PKSampler(Sampler[list[int]]):
    """Batch sampler yielding lists of ``p * k`` dataset indices: ``p`` distinct items, ``k`` rows each.

    An epoch walks through the items in a random order, ``p`` at a time, so every item appears
    about equally often; with ``num_batches`` above one pass it starts a fresh order (a batch never
    repeats an item). Items with at least ``k`` rows give ``k`` different rows; an item with fewer
    gives all of its rows and repeats some (sampling with replacement only there). Rows whose label
    is negative (unknown item) are never drawn.

    The order depends only on ``seed`` and the epoch (:meth:`set_epoch`), so all DDP ranks draw the
    same batches; rank ``r`` of ``world_size`` takes batches ``r, r + world_size, ...`` and every
    rank gets the same number. ``num_batches`` counts batches of the whole epoch over all ranks
    (default: one pass over the items, ``n_items // p``).
    """

    def __init__(
        self,
        item_labels: Sequence[int],
        p: int,
        k: int,
        seed: int = 0,
        num_batches: Optional[int] = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        labels = np.asarray(item_labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"item_labels must be a 1-D sequence of integers, got shape {labels.shape} {labels.dtype}")
        if p < 1 or k < 1:
            raise ValueError(f"p and k must be >= 1, got p={p}, k={k}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        rows = np.flatnonzero(labels >= 0)
        items, inverse = np.unique(labels[rows], return_inverse=True)
        if len(items) < p:
            raise ValueError(f"a batch needs p={p} distinct items but the labels hold only {len(items)}")
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(items)))[:-1]
        self._rows_of_item = np.split(rows[order], bounds)
        self.p, self.k = int(p), int(k)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        total = len(items) // self.p if num_batches is None else int(num_batches)
        self._per_rank = total // self.world_size
        if self._per_rank < 1:
            raise ValueError(f"{total} batch(es) per epoch cannot give each of {world_size} ranks one")
        self.epoch = 0

    @property
    def num_items(self) -> int:
        return len(self._rows_of_item)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose batches the next iteration yields (call it every epoch, as with DistributedSampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._per_rank

    def _draw_rows(self, rng: np.random.Generator, item: int) -> np.ndarray:
        rows = self._rows_of_item[item]
        if len(rows) >= self.k:
            return rng.choice(rows, self.k, replace=False)
        # Too few images: use each once, then repeat random ones.
        return np.concatenate([rows, rng.choice(rows, self.k - len(rows), replace=True)])

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        per_pass = self.num_items // self.p
        order = np.empty(0, dtype=np.int64)
        for batch_number in range(self._per_rank * self.world_size):
            position = batch_number % per_pass
            if position == 0:
                order = rng.permutation(self.num_items)
            items = order[position * self.p : (position + 1) * self.p]
            # Every rank draws every batch, so the generator stays in step across ranks.
            batch = np.concatenate([self._draw_rows(rng, item) for item in items])
            if batch_number % self.world_size == self.rank:
                yield batch.tolist()
