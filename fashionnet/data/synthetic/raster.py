"""Raster helpers of the renderer: projective transforms and anti-aliased masks.

Coordinates use the pixel-index convention (integer = pixel centre), as ImageDraw does;
:func:`_warp` converts to PIL's ``transform`` convention. The same 3 x 3 matrices move polygon
vertices, landmarks (:func:`_apply`) and pixels (:func:`_warp`), so labels follow the image exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw


def _sim(scale: float, tx: float, ty: float) -> np.ndarray:
    return np.array([[scale, 0.0, tx], [0.0, scale, ty], [0.0, 0.0, 1.0]])


def _apply(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, dtype=np.float64)
    flat = pts.reshape(-1, 2)
    hom = np.concatenate([flat, np.ones((len(flat), 1))], axis=1) @ h.T
    return (hom[:, :2] / hom[:, 2:3]).reshape(pts.shape)


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 homography mapping 4 source points onto 4 destination points."""
    a, b = [], []
    for (x, y), (u, v) in zip(src, dst):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b += [u, v]
    h = np.linalg.solve(np.array(a, float), np.array(b, float))
    return np.append(h, 1.0).reshape(3, 3)


def _warp(img: Image.Image, h: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Warp ``img`` by the forward homography ``h`` (pixel-index convention) into ``size``."""
    shift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    unshift = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    inv = shift @ np.linalg.inv(h) @ unshift  # PIL samples output pixel centres at (x + 0.5, y + 0.5)
    inv = inv / inv[2, 2]
    return img.transform(size, Image.Transform.PERSPECTIVE, tuple(inv.ravel()[:8]), Image.Resampling.BILINEAR)


class _MaskPainter:
    """Anti-aliased masks (float32 in [0, 1]) of shapes given in canvas coordinates.

    Shapes are drawn 2x supersampled and box-filtered down, either over the whole working window
    or (``local=True``) over just the shape's bounding box, returned as a :class:`_Patch`.
    """

    SS = 2

    def __init__(self, origin: tuple[int, int], size: tuple[int, int]):
        self.x0, self.y0 = origin
        self.w, self.h = size

    def _box(self, pts, pad: float) -> tuple[int, int, int, int] | None:
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2) - (self.x0, self.y0)
        bx0, by0 = np.floor(pts.min(0) - pad).astype(int)
        bx1, by1 = np.ceil(pts.max(0) + pad).astype(int) + 1
        bx0, by0, bx1, by1 = max(bx0, 0), max(by0, 0), min(bx1, self.w), min(by1, self.h)
        return (bx0, by0, bx1, by1) if bx1 > bx0 and by1 > by0 else None

    def paint(self, fn, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Run ``fn(draw, px)`` on a supersampled 'L' image; ``px`` maps canvas points to it."""
        bx0, by0, bx1, by1 = box or (0, 0, self.w, self.h)
        ox, oy = self.x0 + bx0, self.y0 + by0

        def px(pts):
            q = (np.asarray(pts, dtype=np.float64).reshape(-1, 2) - (ox, oy)) * self.SS + (self.SS - 1) / 2.0
            return [tuple(p) for p in q]

        img = Image.new("L", ((bx1 - bx0) * self.SS, (by1 - by0) * self.SS), 0)
        fn(ImageDraw.Draw(img), px)
        small = img.resize((bx1 - bx0, by1 - by0), Image.Resampling.BOX)
        return np.asarray(small, dtype=np.float32) / 255.0

    def polygon(self, pts) -> np.ndarray:
        return self.paint(lambda d, px: d.polygon(px(pts), fill=255))

    def local_polygons(self, polys) -> "_Patch | None":
        return self.local(np.concatenate(polys), lambda d, px: [d.polygon(px(q), fill=255) for q in polys])

    def local_line(self, pts, width: float) -> "_Patch | None":
        """A polyline ``width`` canvas pixels wide, round-jointed."""
        w = max(1, round(width * self.SS))
        return self.local(pts, lambda d, px: d.line(px(pts), fill=255, width=w, joint="curve"), pad=width)

    def local(self, pts, fn, pad: float = 2.0) -> "_Patch | None":
        """Paint ``fn`` only over the bounding box of ``pts`` (plus ``pad`` pixels)."""
        box = self._box(pts, pad)
        if box is None:
            return None
        return _Patch(slice(box[1], box[3]), slice(box[0], box[2]), self.paint(fn, box))


@dataclass
class _Patch:
    rows: slice
    cols: slice
    mask: np.ndarray


def _shape_polygon(shape: str, centre, size: float) -> list[np.ndarray]:
    """Polygons of a print motif of roughly ``size`` units across."""
    c = np.asarray(centre, float)
    r = size / 2.0
    if shape == "star":
        ang = np.arange(10) * math.pi / 5 - math.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        return [c + np.stack([np.cos(ang) * rad, np.sin(ang) * rad], 1)]
    if shape == "heart":
        t = np.linspace(0, 2 * math.pi, 28, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return [c + np.stack([x, y], 1) * (r / 16.0)]
    t = np.linspace(0, 2 * math.pi, 24, endpoint=False)  # circle
    return [c + np.stack([np.cos(t), np.sin(t)], 1) * r]


def _capsule(draw: ImageDraw.ImageDraw, p0, p1, width: float, fill) -> None:
    w = max(1, int(round(width)))
    draw.line([tuple(p0), tuple(p1)], fill=fill, width=w)
    for p in (p0, p1):
        draw.ellipse([p[0] - width / 2, p[1] - width / 2, p[0] + width / 2, p[1] + width / 2], fill=fill)


def _erode(mask: np.ndarray) -> np.ndarray:
    """3x3 cross erosion (minimum over the 4-neighbourhood), edges padded with zero."""
    out = mask.copy()
    out[1:, :] = np.minimum(out[1:, :], mask[:-1, :])
    out[:-1, :] = np.minimum(out[:-1, :], mask[1:, :])
    out[:, 1:] = np.minimum(out[:, 1:], mask[:, :-1])
    out[:, :-1] = np.minimum(out[:, :-1], mask[:, 1:])
    out[0, :] = out[-1, :] = 0
    out[:, 0] = out[:, -1] = 0
    return out


def _disc_coverage(mask: np.ndarray, x: float, y: float, radius: float) -> float:
    """Share of a disc around (x, y) covered by ``mask`` (cells outside the array count as uncovered)."""
    r = max(1.0, radius)
    xs = np.arange(math.floor(x - r), math.ceil(x + r) + 1)
    ys = np.arange(math.floor(y - r), math.ceil(y + r) + 1)
    gx, gy = np.meshgrid(xs, ys)
    inside_disc = (gx - x) ** 2 + (gy - y) ** 2 <= r * r
    h, w = mask.shape
    ok = inside_disc & (gx >= 0) & (gx < w) & (gy >= 0) & (gy < h)
    if inside_disc.sum() == 0:
        return 0.0
    vals = np.zeros(gx.shape, dtype=np.float32)
    vals[ok] = mask[gy[ok], gx[ok]]
    return float(vals[inside_disc].mean())
