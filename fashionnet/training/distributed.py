"""The process group torchrun starts for a distributed run, and seeding every rank alike."""

from __future__ import annotations

import datetime
import os
import random

import numpy as np
import torch
import torch.distributed as dist


def init_distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); starts a process group when launched by torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, 0
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return rank, world, local


def seed_everything(seed: int) -> None:
    """Seed random, numpy and torch (every rank alike, so DDP samplers agree)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: numpy and random seeded from the worker's torch seed."""
    s = torch.initial_seed() % (2**32)
    np.random.seed(s)
    random.seed(s)
