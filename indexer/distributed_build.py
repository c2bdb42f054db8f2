"""A build spread over processes and machines: ``torchrun --nnodes N --nproc_per_node M indexer build ...``.

Each rank embeds every world-th image of the gallery (rank r: images r, r + world, ...). With FAISS,
the ranks send their embeddings to rank 0, which builds and saves the index as one process would
(the same vectors in the same order). With Milvus, each rank writes its images into the collection
itself and rank 0 records the index (:mod:`indexer.milvus_build`).

The ranks talk over a gloo process group (CPU tensors only, so it works with and without GPUs);
each rank embeds on its own GPU where there are several.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from indexer.embedding import EmbeddedImages

# Rank 0 waits at the gather while the others embed; torchrun ends every rank when one fails, so
# the wait needs no limit shorter than the longest embedding run.
GROUP_TIMEOUT = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class Ranks:
    """This process's place in a distributed build (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1  # the ranks on this machine

    @property
    def one_machine(self) -> bool:
        return self.local_world >= self.world

    @property
    def first(self) -> bool:
        return self.rank == 0

    def share(self, count: int) -> np.ndarray:
        """The positions of the images this rank embeds, out of ``count``."""
        return np.arange(self.rank, count, self.world, dtype=np.int64)

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value if self.first else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> Optional[list]:
        """Every rank's ``value``, in rank order, on rank 0 (None on the others)."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        out = [None] * self.world if self.first else None
        dist.gather_object(value, out, dst=0)
        return out


def ranks_from_environment() -> Ranks:
    """The ranks torchrun describes in the environment, with their process group started; a plain
    run is rank 0 of 1."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return Ranks()
    import torch
    import torch.distributed as dist

    world = int(os.environ["WORLD_SIZE"])
    ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        torch.cuda.set_device(ranks.local_rank % torch.cuda.device_count())  # "cuda" is then this rank's GPU
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo", timeout=GROUP_TIMEOUT)
    return ranks


def end_process_group(ranks: Ranks) -> None:
    if ranks.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def with_positions(embedded: EmbeddedImages, positions: Sequence[int]) -> EmbeddedImages:
    """``embedded`` of a sub-list of images, its rows' positions turned into ``positions`` (those of
    the sub-list's images in the whole list)."""
    rows = embedded.rows.copy()
    rows["position"] = np.asarray(positions, dtype=np.int64)[rows["position"].to_numpy(np.int64)] if len(rows) else []
    return replace(embedded, rows=rows)


def gather_embedded(ranks: Ranks, mine: EmbeddedImages, paths: Sequence[str]) -> Optional[EmbeddedImages]:
    """On rank 0, every rank's embedded images joined in gallery order (as one process embeds
    them; ``paths`` is the whole gallery); None on the other ranks."""
    parts = ranks.gather(mine)
    if parts is None:
        return None
    if len(parts) == 1:
        return parts[0]
    filled = [p.rows for p in parts if len(p.rows)]
    rows = pd.concat(filled, ignore_index=True) if filled else parts[0].rows
    order = np.argsort(rows["position"].to_numpy(np.int64), kind="stable")
    vectors = np.concatenate([p.embeddings for p in parts])[order]
    where = {str(path): i for i, path in enumerate(paths)}
    skipped = sorted((s for p in parts for s in p.skipped), key=lambda s: where.get(s[0], len(where)))
    return EmbeddedImages(np.ascontiguousarray(vectors), rows.iloc[order].reset_index(drop=True), skipped, max(p.seconds for p in parts))
