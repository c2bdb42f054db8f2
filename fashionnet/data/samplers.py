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


class LookAlikeSampler(PKSampler):
    """P x K batches in which look-alike items meet: each batch is built from groups of ``group``
    items, a seed item and its nearest look-alikes, so the triplet loss sees the negatives that
    matter (an item's siblings) in every step instead of about once in a dozen batches.

    Look-alikes start as items of the same category (``item_groups``: one group key per item label,
    e.g. its category); :meth:`set_item_embeddings` replaces them with each item's ``neighbours``
    nearest items in the current embedding space (call it each epoch). Like :class:`PKSampler`, the
    batches depend only on the seed, the epoch and the look-alike table, so DDP ranks that share the
    table draw the same batches.
    """

    def __init__(self, item_labels: Sequence[int], item_groups: Sequence, p: int, k: int, group: int = 2, neighbours: int = 5,
                 seed: int = 0, num_batches: Optional[int] = None, rank: int = 0, world_size: int = 1):
        super().__init__(item_labels, p, k, seed, num_batches, rank, world_size)
        labels = np.asarray(item_labels)
        self._items = np.unique(labels[labels >= 0])
        if len(item_groups) <= int(self._items.max()):
            raise ValueError(f"item_groups has {len(item_groups)} entries but item labels go up to {int(self._items.max())}")
        if not 1 <= group <= p:
            raise ValueError(f"group must be in [1, p={p}], got {group}")
        self.group, self.neighbours = int(group), int(neighbours)
        keys = np.asarray([item_groups[int(i)] for i in self._items], dtype=object)
        # positions (into self._items) of the other items sharing each item's group key
        self._look_alikes = [np.flatnonzero((keys == keys[i]) & (np.arange(len(keys)) != i)) for i in range(len(keys))]

    def set_item_embeddings(self, embeddings: np.ndarray, present: Optional[np.ndarray] = None) -> None:
        """Look-alikes from embeddings (one row per item label; ``present`` marks rows that were
        seen, others keep their group look-alikes)."""
        emb = np.asarray(embeddings, dtype=np.float32)[self._items]
        seen = np.ones(len(emb), bool) if present is None else np.asarray(present, bool)[self._items]
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        sims = emb @ emb.T
        sims[~seen] = -np.inf
        sims[:, ~seen] = -np.inf
        np.fill_diagonal(sims, -np.inf)
        m = min(self.neighbours, len(emb) - 1)
        if m < 1:
            return
        nearest = np.argsort(-sims, axis=1, kind="stable")[:, :m]
        for i in np.flatnonzero(seen):
            self._look_alikes[i] = nearest[i][np.isfinite(sims[i, nearest[i]])]

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch, 1])
        n = self.num_items
        order, cursor, used = rng.permutation(n), 0, np.zeros(n, bool)
        for batch_number in range(self._per_rank * self.world_size):
            chosen: list[int] = []
            while len(chosen) < self.p:
                if cursor >= n:  # a fresh pass over the items
                    order, cursor, used = rng.permutation(n), 0, np.zeros(n, bool)
                    used[chosen] = True
                seed_item = int(order[cursor])
                cursor += 1
                if used[seed_item]:
                    continue
                chosen.append(seed_item)
                used[seed_item] = True
                candidates = [int(c) for c in self._look_alikes[seed_item] if c not in chosen]
                rng.shuffle(candidates)
                for c in candidates[: min(self.group - 1, self.p - len(chosen))]:
                    chosen.append(c)
                    used[c] = True
            batch = np.concatenate([self._draw_rows(rng, item) for item in chosen])
            if batch_number % self.world_size == self.rank:
                yield batch.tolist()
