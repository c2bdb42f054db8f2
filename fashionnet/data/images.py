"""Safe image decoding shared by the dataset, the Predictor, the indexer and the web page.

Every path into the project's pixels goes through :func:`load_image`, so corrupt files, odd modes
and decompression bombs are handled once, with an error that names the file.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# 64 megapixels is far above any clothing photo; larger files are refused before decoding.
MAX_IMAGE_PIXELS = 64_000_000
MAX_IMAGE_BYTES = 50 * 1024 * 1024

ImageInput = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]


class ImageLoadError(ValueError):
    """An image could not be used. ``source`` names the file (or "<upload>")."""

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


def _to_rgb(img: Image.Image, source: str) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; alpha is composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size else 0.0
        scale = 255.0 / (65535.0 if hi > 255 else max(hi, 1.0)) if hi > 255 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def load_image(image: ImageInput, source: str | None = None) -> Image.Image:
    """Open ``image`` (a path, raw bytes, a PIL image or an HxW[xC] array) as an 8-bit RGB PIL image.

    Raises :class:`ImageLoadError` naming the source for missing, empty, corrupt, truncated or
    oversized input. EXIF orientation is applied so pixels match what a viewer shows.
    """
    if isinstance(image, Image.Image):
        return _to_rgb(image, source or "<image>")
    if isinstance(image, np.ndarray):
        return _array_to_image(image, source or "<array>")
    if isinstance(image, (bytes, bytearray)):
        source = source or "<upload>"
        if len(image) == 0:
            raise ImageLoadError(source, "the file is empty (0 bytes)")
        if len(image) > MAX_IMAGE_BYTES:
            raise ImageLoadError(source, f"the file is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
        return _decode(io.BytesIO(bytes(image)), source)
    path = Path(image)
    source = source or str(path)
    if not path.is_file():
        raise ImageLoadError(source, "no such image file")
    size = path.stat().st_size
    if size == 0:
        raise ImageLoadError(source, "the file is empty (0 bytes)")
    if size > MAX_IMAGE_BYTES:
        raise ImageLoadError(source, f"the file is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
    with open(path, "rb") as fh:
        return _decode(io.BytesIO(fh.read()), source)


def _decode(stream: io.BytesIO, source: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(stream)
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise ImageLoadError(source, f"image is {w}x{h} pixels, above the {MAX_IMAGE_PIXELS:,}-pixel limit (decompression-bomb guard)")
            img.load()
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(source, f"image is too large (decompression-bomb guard): {exc}") from None
    except UnidentifiedImageError:
        raise ImageLoadError(source, "not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(source, f"corrupt or truncated image ({exc})") from None
    if img.size[0] < 1 or img.size[1] < 1:
        raise ImageLoadError(source, "image has no pixels")
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # broken EXIF must not lose an otherwise good image
        pass
    return _to_rgb(img, source)


def _array_to_image(arr: np.ndarray, source: str) -> Image.Image:
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageLoadError(source, f"expected an HxW, HxWx3 or HxWx4 array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        a = arr.astype(np.float64)
        if np.issubdtype(arr.dtype, np.floating) and a.max(initial=0) <= 1.0:
            a = a * 255.0
        elif a.max(initial=0) > 255:
            a = a * (255.0 / 65535.0)
        arr = np.clip(a, 0, 255).astype(np.uint8)
    if arr.shape[2] == 1:
        return Image.fromarray(arr[..., 0], mode="L").convert("RGB")
    return _to_rgb(Image.fromarray(arr, mode="RGB" if arr.shape[2] == 3 else "RGBA"), source)
