"""Photographic style augmentation for training images: what a camera and a room do to a photo.

Real photos differ from the synthetic ones in exposure, white balance, sensor noise, focus and
compression, and many catalogue shots are grey-ish or black-and-white. None of these moves a pixel,
so landmarks are untouched and the augmentation wraps any landmark transform:
``StyledTransform(base, StyleAugment(strength=1.0))``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps


def _uniform(low: float, high: float) -> float:
    # torch's generator: DataLoader seeds it per worker and per epoch, so runs are repeatable
    return low + (high - low) * float(torch.rand(()))


def _happens(p: float) -> bool:
    return p > 0 and float(torch.rand(())) < p


@dataclass(frozen=True)
class StyleAugment:
    """Random camera effects; ``strength`` scales every effect's probability (0 switches it off)."""

    strength: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 2.0:
            raise ValueError(f"style augmentation strength must be in [0, 2], got {self.strength}")

    def __call__(self, image: Image.Image) -> Image.Image:
        s = self.strength
        if s == 0:
            return image
        image = image.convert("RGB")
        if _happens(0.1 * s):
            image = ImageOps.grayscale(image).convert("RGB")
        if _happens(min(1.0, 0.7 * s)):  # light and sensor, applied as one float pass
            pixels = np.asarray(image, dtype=np.float32) / 255.0
            if _happens(0.5):  # white balance: warm or cool light
                pixels = pixels * np.array([_uniform(0.8, 1.2), _uniform(0.9, 1.1), _uniform(0.8, 1.2)], dtype=np.float32)
            if _happens(0.5):  # exposure and tone curve
                pixels = np.clip(pixels * _uniform(0.6, 1.4), 0, 1) ** _uniform(0.7, 1.5)
            if _happens(0.4):  # sensor noise
                rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ())))
                pixels = pixels + rng.normal(0.0, _uniform(0.01, 0.05), pixels.shape).astype(np.float32)
            image = Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8))
        if _happens(0.3 * s):
            image = image.filter(ImageFilter.GaussianBlur(_uniform(0.5, 2.0)))
        if _happens(0.3 * s):
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=int(_uniform(25, 90)))
            buffer.seek(0)
            image = Image.open(buffer).convert("RGB")
        return image


class StyledTransform:
    """A landmark transform that first passes the image through a :class:`StyleAugment`."""

    def __init__(self, base: Callable, augment: StyleAugment):
        self.base = base
        self.augment = augment

    def _styled(self, image):
        return self.augment(image) if isinstance(image, Image.Image) else image

    def __call__(self, image, landmarks_xy=None, visibility=None, bbox=None):
        return self.base(self._styled(image), landmarks_xy, visibility, bbox)

    def with_bbox(self, image, landmarks_xy=None, visibility=None, bbox=None):
        """The base transform's five outputs, the garment box included (the dataset asks for it)."""
        return self.base.with_bbox(self._styled(image), landmarks_xy, visibility, bbox)
