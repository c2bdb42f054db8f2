"""Cheap photographic shading in numpy and PIL: rounded bodies lit from one side, soft shadows.

A blurred coverage mask works as a height field: its gradient is the surface normal near the
outline, so ``bevel`` brightens the edges that face the light and darkens the others (cloth and
limbs look round rather than flat). ``soft_shadow`` is the same mask shifted away from the light
and blurred, which darkens the wall, floor or bed behind a garment.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def _blur(mask: np.ndarray, radius: float) -> np.ndarray:
    img = Image.fromarray(np.clip(mask * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return np.asarray(img.filter(ImageFilter.GaussianBlur(max(0.5, float(radius)))), np.float32) / 255.0  # PIL rejects numpy floats


def bevel(mask: np.ndarray, radius: float, light: np.ndarray, strength: float) -> np.ndarray:
    """Multiplicative shading (about 1 - strength .. 1 + strength) of a shape lit from ``light``
    (unit 2-vector, image x right / y down, pointing from the shape towards the lamp)."""
    if min(mask.shape) < 2:  # a sliver of a shape at the photo's edge has no gradient to light
        return np.ones(mask.shape, np.float32)
    h = _blur(mask, radius)
    gy, gx = np.gradient(h)
    # The outward normal is minus the gradient; facing the light brightens.
    facing = -(gx * light[0] + gy * light[1]) * radius * 2.5
    ambient = 0.82 + 0.18 * np.clip(h * 2.0, 0.0, 1.0)  # edges and creases get less ambient light
    return (ambient * (1.0 + strength * np.clip(facing, -1.0, 1.0))).astype(np.float32)


def soft_shadow(alpha: np.ndarray, offset: tuple[float, float], radius: float) -> np.ndarray:
    """Shadow density in [0, 1]: ``alpha`` shifted by ``offset`` pixels and blurred."""
    h, w = alpha.shape
    dx, dy = int(round(offset[0])), int(round(offset[1]))
    shifted = np.zeros_like(alpha)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    if abs(dx) < w and abs(dy) < h:
        shifted[yd, xd] = alpha[ys, xs]
    return _blur(shifted, radius)


def highlight(shade: np.ndarray, gloss: float) -> np.ndarray:
    """Additive sheen (0..255 scale) where shading is brightest: satin, leather, synthetics."""
    if gloss <= 0:
        return np.zeros(shade.shape, np.float32)
    return (np.clip(shade - 1.05, 0.0, None) * gloss * 600.0).astype(np.float32)
