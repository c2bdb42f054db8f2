"""The camera after the scene: exposure, white balance, vignetting, lens and motion blur, sensor noise.

Perspective is part of the geometry (photos.py maps the figure frame to the photo with a
homography that moves pixels and landmarks alike); this module only changes pixel values, never
where anything is. All random numbers are drawn in :func:`sample_camera` whether or not they are
used, so a scene can be rendered with and without degradation and stay otherwise identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class CameraSettings:
    exposure: float  # overall gain
    white_balance: tuple[float, float, float]  # per-channel gains (colour cast of the light)
    gamma: float
    contrast: float  # S-curve strength of the tone curve
    vignette: float  # darkening at the corners
    light_ramp: tuple[float, float, float]  # (x, y, strength) of a gradient of light over the frame
    lens_blur: float  # Gaussian radius in pixels (focus, cheap optics)
    motion: tuple[int, float]  # (length in pixels, angle in radians); length 0 = none
    noise: float  # sensor noise sigma at mid grey
    chroma_noise: float
    jpeg_quality: int
    noise_seed: int


def sample_camera(rng: np.random.Generator, kind: str) -> CameraSettings:
    """Studio shots (``kind`` "shop") are clean; consumer photos vary widely."""
    shop = kind == "shop"
    wb = rng.uniform(0.94, 1.06, 3) if shop else rng.uniform(0.86, 1.14, 3)
    wb = wb / wb.mean()
    motion_len = int(rng.integers(2, 9)) if (not shop and rng.random() < 0.2) else 0
    return CameraSettings(
        exposure=float(rng.uniform(0.95, 1.08) if shop else rng.uniform(0.65, 1.25)),
        white_balance=(float(wb[0]), float(wb[1]), float(wb[2])),
        gamma=float(rng.uniform(0.92, 1.08) if shop else rng.uniform(0.8, 1.25)),
        contrast=float(rng.uniform(0.0, 0.15) if shop else rng.uniform(-0.1, 0.3)),
        vignette=float(rng.uniform(0.0, 0.08) if shop else rng.uniform(0.0, 0.35)),
        light_ramp=(float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1)), float(0.0 if shop else rng.uniform(0.0, 0.3))),
        lens_blur=float(rng.uniform(0.0, 0.5) if shop else (rng.uniform(0.3, 1.6) if rng.random() < 0.6 else 0.0)),
        motion=(motion_len, float(rng.uniform(0, np.pi))),
        noise=float(rng.uniform(0.5, 2.0) if shop else rng.uniform(1.5, 9.0)),
        chroma_noise=float(0.0 if shop else rng.uniform(0.0, 4.0)),
        jpeg_quality=int(rng.integers(88, 96) if shop else rng.integers(35, 91)),
        noise_seed=int(rng.integers(1 << 62)),
    )


def _motion_blur(arr: np.ndarray, length: int, angle: float) -> np.ndarray:
    """Average of ``length`` copies shifted along a line (edges repeat)."""
    h, w = arr.shape[:2]
    dx, dy = np.cos(angle), np.sin(angle)
    acc = np.zeros_like(arr)
    for k in range(length):
        t = k - (length - 1) / 2.0
        sx, sy = int(round(t * dx)), int(round(t * dy))
        ys = np.clip(np.arange(h) - sy, 0, h - 1)
        xs = np.clip(np.arange(w) - sx, 0, w - 1)
        acc += arr[ys][:, xs]
    return acc / length


def apply_camera(image: Image.Image, cam: CameraSettings) -> Image.Image:
    """The photo as the sensor and processing would deliver it (before JPEG, which the writer does)."""
    w, h = image.size
    ys = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h - 0.5
    xs = (np.arange(w, dtype=np.float32)[None, :] + 0.5) / w - 0.5
    lx, ly, lk = cam.light_ramp
    gain = (1.0 + lk * (lx * xs + ly * ys)) * (1.0 - cam.vignette * (xs**2 + ys**2) * 2.0)  # light fall-off
    arr = np.asarray(image, np.float32) * gain[..., None]
    img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")
    # Exposure, white balance, gamma and an S-curve act on values only: one lookup table per channel.
    levels = np.arange(256, dtype=np.float64) / 255.0
    lut = []
    for wb in cam.white_balance:
        v = np.clip(levels * cam.exposure * wb, 0.0, 1.0) ** cam.gamma
        v = v + cam.contrast * v * (1.0 - v) * (2.0 * v - 1.0) * 2.0
        lut += [int(x) for x in np.clip(v * 255.0 + 0.5, 0, 255)]
    img = img.point(lut)
    if cam.motion[0] > 1:
        blurred = _motion_blur(np.asarray(img, np.float32), *cam.motion)
        img = Image.fromarray(np.clip(blurred + 0.5, 0, 255).astype(np.uint8), "RGB")
    if cam.lens_blur > 0.2:
        img = img.filter(ImageFilter.GaussianBlur(cam.lens_blur))
    noise_rng = np.random.default_rng(cam.noise_seed)
    arr = np.asarray(img, np.float32)
    # Shot noise grows with brightness (green channel as the proxy); chroma noise is blotchy
    # (demosaicing spreads it).
    sigma = cam.noise * (0.6 + (0.8 / 255.0) * arr[..., 1:2])
    arr = arr + noise_rng.standard_normal((h, w, 1), dtype=np.float32) * sigma
    if cam.chroma_noise > 0:
        small = noise_rng.standard_normal(((h + 1) // 2, (w + 1) // 2, 3), dtype=np.float32) * cam.chroma_noise
        arr = arr + np.repeat(np.repeat(small, 2, 0), 2, 1)[:h, :w]
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")
