"""Where and how the model runs: the device and CPU threads.

Threads matter more than they seem on a small CPU. torch and FAISS split each operation across
their OpenMP threads and wait for all of them at the end; when another process holds one of the
cores, every operation waits for a thread that is not running, and a query can take many times
its usual time. One thread per query avoids that, and concurrent queries then use the other cores.
scripts/benchmark_serving.py measures it.
"""

from __future__ import annotations

import os
import threading
from typing import Callable, Generic, TypeVar

import torch

THREADS_ENV = "FASHIONNET_THREADS"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu. Asking for cuda without one is a clear error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA GPU on this machine; use --device cpu or auto")
    return torch.device(device)


def set_threads(threads: int) -> int:
    """Use ``threads`` intra-op threads in torch and in FAISS (if it is loaded); returns the number."""
    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:  # FAISS is the indexer's; the model library runs without it
        pass
    return threads


def serving_threads() -> int:
    """Threads for answering queries: $FASHIONNET_THREADS if set, else 1 (see the module docstring)."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return 1
    try:
        threads = int(value)
    except ValueError:
        raise ValueError(f"${THREADS_ENV} must be a whole number of threads, got {value!r}") from None
    if threads < 1:
        raise ValueError(f"${THREADS_ENV} must be at least 1, got {threads}")
    return threads


T = TypeVar("T")


class PerThreadCount(Generic[T]):
    """Objects made once per CPU thread count (an inference session, a compiled model), safe to ask
    for from many threads: two asking for a new count at once make one."""

    def __init__(self, make: Callable[[int], T]):
        self._make, self._made, self._making = make, {}, threading.Lock()

    def get(self, threads: int | None = None) -> T:
        """The object for ``threads`` (default: torch's thread count now, as the serving code sets it)."""
        threads = max(1, int(threads if threads is not None else torch.get_num_threads()))
        made = self._made.get(threads)
        if made is None:
            with self._making:
                made = self._made.get(threads)
                if made is None:
                    made = self._made[threads] = self._make(threads)
        return made
