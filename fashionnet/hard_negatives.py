"""Hard negatives beyond one batch: a cross-batch memory of recent embeddings (XBM-style) and the
per-item embedding table that refreshes the look-alike batches each epoch.

A CPU batch holds 32 photos, so batch-hard mining only ever compares an anchor with a few dozen
others. Embeddings drift slowly once training settles, so the last thousand or so from earlier
steps are still good negatives: the memory keeps them (no gradient) and the loss compares each
anchor of the batch with the batch plus the memory.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

XBM_LOSSES = ("triplet", "contrastive")


class CrossBatchMemory:
    """A ring buffer of (embedding, item label) rows; :meth:`loss` then :meth:`enqueue` each step."""

    def __init__(self, size: int, dim: int, loss: str = "contrastive", margin: float = 0.2, negative_threshold: float = 0.5):
        if size < 1:
            raise ValueError(f"memory size must be >= 1, got {size}")
        if loss not in XBM_LOSSES:
            raise ValueError(f"loss must be one of {XBM_LOSSES}, got {loss!r}")
        self.embeddings = torch.zeros(size, dim)
        self.labels = torch.full((size,), -1, dtype=torch.int64)
        self.size, self.loss_name = int(size), loss
        self.margin, self.negative_threshold = float(margin), float(negative_threshold)
        self._next, self.filled = 0, 0

    def enqueue(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        emb, lab = embeddings.detach().float().cpu()[-self.size:], labels.detach().cpu()[-self.size:]
        idx = (self._next + torch.arange(len(emb))) % self.size
        self.embeddings[idx], self.labels[idx] = emb, lab
        self._next = int((self._next + len(emb)) % self.size)
        self.filled = min(self.size, self.filled + len(emb))

    def loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Each anchor of the batch against the memory's rows (0 while the memory is empty).

        "contrastive": (1 - s) over positive pairs plus s over negative pairs above the threshold,
        each averaged per anchor; "triplet": the hardest positive and hardest negative in the memory,
        max(0, margin + d(a, p) - d(a, n)) on unit vectors.
        """
        if self.filled == 0:
            return embeddings.sum() * 0.0
        memory = self.embeddings[: self.filled].to(embeddings.device, embeddings.dtype)
        memory_labels = self.labels[: self.filled].to(labels.device)
        sims = F.normalize(embeddings, dim=1) @ memory.T
        positive = labels[:, None] == memory_labels[None, :]
        negative = ~positive & (memory_labels[None, :] >= 0)
        if self.loss_name == "contrastive":
            pos = ((1 - sims) * positive).sum(1) / positive.sum(1).clamp(min=1)
            hard = negative & (sims > self.negative_threshold)
            neg = (sims * hard).sum(1) / hard.sum(1).clamp(min=1)
            return (pos + neg).mean()
        dist = (2 - 2 * sims).clamp(min=1e-12).sqrt()
        has_both = positive.any(1) & negative.any(1)
        if not has_both.any():
            return embeddings.sum() * 0.0
        hardest_pos = dist.masked_fill(~positive, float("-inf")).max(1).values
        hardest_neg = dist.masked_fill(~negative, float("inf")).min(1).values
        return F.relu(self.margin + hardest_pos - hardest_neg)[has_both].mean()


class ItemEmbeddingTable:
    """Each item's mean training embedding over an epoch, for :class:`LookAlikeSampler` neighbours."""

    def __init__(self, num_items: int, dim: int):
        self.sums = torch.zeros(num_items, dim, dtype=torch.float64)
        self.counts = torch.zeros(num_items, dtype=torch.float64)

    def add(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        labels = labels.detach().cpu()
        keep = labels >= 0
        self.sums.index_add_(0, labels[keep], embeddings.detach().double().cpu()[keep])
        self.counts.index_add_(0, labels[keep], torch.ones(int(keep.sum()), dtype=torch.float64))

    def means(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean embeddings (items, dim), seen (items,) bool), summed over DDP ranks when distributed."""
        sums, counts = self.sums.clone(), self.counts.clone()
        if dist.is_available() and dist.is_initialized():
            device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
            sums, counts = sums.to(device), counts.to(device)
            dist.all_reduce(sums)
            dist.all_reduce(counts)
            sums, counts = sums.cpu(), counts.cpu()
        return (sums / counts.clamp(min=1)[:, None]).float(), counts > 0

    def reset(self) -> None:
        self.sums.zero_()
        self.counts.zero_()
