"""What every metric function accepts: numpy arrays, torch tensors or sequences, read as numpy.

Metrics return plain Python floats and dicts; rates are fractions in [0, 1] (multiply by 100 for the
percentages papers print).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np


def as_numpy(x: Any) -> np.ndarray:
    """A numpy view of a numpy array, torch tensor or sequence."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def check_ks(ks: Iterable[int], available: int | None = None) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if available is not None and max(ks) > available:
        raise ValueError(f"k={max(ks)} asked for but only {available} ranked results per query were given")
    return ks


def as_boxes(boxes: Any, n: int) -> np.ndarray:
    out = as_numpy(boxes).astype(np.float64).reshape(-1, 4)
    if len(out) != n:
        raise ValueError(f"need one (x1, y1, x2, y2) box per image ({n}), got {len(out)}")
    return out
