"""Labels of a rendered photo, and the occluders of consumer photos.

:class:`RenderedImage` is one photo with its labels; :func:`_finish_labels` decides visibility from
the masks actually drawn: a landmark is occluded when what covers it covers at least half of a
small disc around it, and truncated (coordinate clamped) outside the frame. :func:`_draw_occluders`
puts arms, bags and hair locks over consumer photos. The photos themselves are composed in
:mod:`.presentation`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from fashionnet.data.synthetic.items import ItemSpec
from fashionnet.data.synthetic.raster import _capsule, _disc_coverage
from fashionnet.data.synthetic.vocabulary import COLOURS, COMPANION_COLOURS, HAIR_COLOURS, SKIN_TONES
from fashionnet.landmarks import ABSENT, CLOTHES_TYPE_SLOTS, NUM_LANDMARKS, OCCLUDED, TRUNCATED, VISIBLE


@dataclass
class RenderedImage:
    """One rendered photo with its labels (pixel coordinates of the image as stored)."""

    image: Image.Image
    landmarks: np.ndarray  # (8, 2) int pixel coordinates; NaN for absent slots
    visibility: np.ndarray  # (8,) int64: 0 visible, 1 occluded, 2 truncated, 3 absent
    bbox: tuple[int, int, int, int]
    variation_type: int
    garment_mask: np.ndarray  # (H, W) bool, before occluders
    occluder_mask: np.ndarray  # (H, W) bool, what was drawn on top: occluders, clips, pegs
    jpeg_quality: int
    style: dict = field(default_factory=dict)  # presentation, scene, palette, texture, framing


def _snap_to_garment(garment: np.ndarray, rx: int, ry: int, reach: int = 2) -> tuple[int, int]:
    """The garment pixel nearest (rx, ry) within ``reach`` pixels (or the point itself): on tiny
    garments the few-units inset is under a pixel and rounding can fall just off the cloth."""
    if garment[ry, rx]:
        return rx, ry
    h, w = garment.shape
    y0, y1, x0, x1 = max(0, ry - reach), min(h, ry + reach + 1), max(0, rx - reach), min(w, rx + reach + 1)
    ys, xs = np.nonzero(garment[y0:y1, x0:x1])
    if len(xs) == 0:
        return rx, ry
    k = int(np.argmin((xs + x0 - rx) ** 2 + (ys + y0 - ry) ** 2))
    return int(xs[k] + x0), int(ys[k] + y0)


def _finish_labels(
    lm_frame: np.ndarray, self_occ: np.ndarray, clothes_type: int, size: tuple[int, int], occluders: np.ndarray | None, radius: float,
    garment: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Round, decide visibility from the drawn masks, clamp truncated points to the frame; with
    ``garment`` (its mask), points in the frame are snapped onto the cloth (at most 2 pixels)."""
    w, h = size
    present = np.zeros(NUM_LANDMARKS, bool)
    present[list(CLOTHES_TYPE_SLOTS[clothes_type])] = True
    vis = np.full(NUM_LANDMARKS, ABSENT, np.int64)
    out = np.full((NUM_LANDMARKS, 2), np.nan)
    for j in np.flatnonzero(present):
        x, y = lm_frame[j]
        rx, ry = int(round(x)), int(round(y))
        if rx < 0 or rx > w - 1 or ry < 0 or ry > h - 1:
            vis[j] = TRUNCATED
            rx, ry = min(max(rx, 0), w - 1), min(max(ry, 0), h - 1)
        elif garment is not None and not garment[ry, rx]:
            rx, ry = _snap_to_garment(garment, rx, ry)
            x, y = float(rx), float(ry)
        if vis[j] == TRUNCATED:
            pass
        elif self_occ[j]:
            vis[j] = OCCLUDED
        elif occluders is not None and occluders[ry, rx] and _disc_coverage(occluders, x, y, radius) >= 0.5:
            vis[j] = OCCLUDED
        else:
            vis[j] = VISIBLE
        out[j] = (rx, ry)
    return out, vis


def _bbox_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0, 0, mask.shape[1] - 1, mask.shape[0] - 1)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _contrasting(rng: np.random.Generator, candidates, avoid, min_dist: float = 80.0) -> tuple[int, int, int]:
    """A random candidate colour at least ``min_dist`` from every ``avoid`` colour (else the farthest)."""
    cand = np.asarray(candidates, np.float64)
    nearest = np.linalg.norm(cand[:, None, :] - np.asarray(avoid, np.float64)[None, :, :], axis=-1).min(axis=1)
    ok = np.flatnonzero(nearest >= min_dist)
    pick = ok[int(rng.integers(len(ok)))] if len(ok) else int(nearest.argmax())
    return tuple(int(v) for v in cand[pick])


def _garment_colours(item: ItemSpec) -> list[tuple[int, int, int]]:
    d = item.details
    cols = [item.style.rgb, item.style.pattern_rgb, d.print_colour]
    for b in (d.collar, d.cuffs, d.hem, d.waist):
        if b is not None:
            cols.append(b.colour)
            if b.stripe is not None:
                cols.append(b.stripe)
    return cols


def _draw_occluders(
    rng: np.random.Generator, item: ItemSpec, lm: np.ndarray, gmask: np.ndarray, size, gsize: float, draw: bool, img: Image.Image
) -> np.ndarray:
    """Arms, bags and hair locks over the garment; returns the occluder mask (drawn or not).

    All random draws happen whether or not ``draw`` is set, so a scene can be re-rendered without
    its occluders and stay otherwise identical.
    """
    w, h = size
    mask_img = Image.new("L", (w, h), 0)
    md = ImageDraw.Draw(mask_img)
    pixels = np.asarray(img)  # the scene before occluders (read-only view)
    idraw = ImageDraw.Draw(img)
    garment_colours = _garment_colours(item)
    present = [j for j in CLOTHES_TYPE_SLOTS[item.style.clothes_type]]
    ys, xs = np.nonzero(gmask)
    n = int(rng.choice([0, 1, 2, 3], p=[0.3, 0.4, 0.22, 0.08]))
    for _ in range(n):
        kind = rng.choice(["arm", "bag", "hair"], p=[0.45, 0.3, 0.25])
        j = int(rng.choice(present))
        if rng.random() < 0.65:  # aim at a landmark region: these are what occlusion labels are about
            target = lm[j] + rng.normal(0, 0.04 * gsize, 2)
        elif len(xs):
            k = int(rng.integers(len(xs)))
            target = np.array([xs[k], ys[k]], float)
        else:
            target = np.array([w / 2, h / 2])
        # Occluder colours must stand out from what they cover (the garment as actually lit).
        tx, ty = int(np.clip(round(target[0]), 0, w - 1)), int(np.clip(round(target[1]), 0, h - 1))
        under = pixels[max(0, ty - 6) : ty + 7 : 3, max(0, tx - 6) : tx + 7 : 3].reshape(-1, 3)
        avoid = garment_colours + [tuple(int(v) for v in p) for p in under]
        if kind == "arm":
            width = gsize * rng.uniform(0.09, 0.14)
            ang = rng.uniform(0, 2 * math.pi)
            start = target + np.array([math.cos(ang), math.sin(ang)]) * gsize * rng.uniform(0.5, 0.9)
            colour = _contrasting(rng, SKIN_TONES + COMPANION_COLOURS, avoid, 60)  # bare or sleeved
            shapes = [("capsule", start, target, width), ("ellipse", target, width * 0.75)]
        elif kind == "bag":
            bw, bh = gsize * rng.uniform(0.18, 0.32), gsize * rng.uniform(0.16, 0.28)
            colour = _contrasting(rng, list(COLOURS.values()) + [(90, 60, 40), (20, 20, 20)], avoid, 80)
            top = target[1] - bh / 2
            strap_end = np.array([target[0] + rng.uniform(-0.3, 0.3) * gsize, top - gsize * 0.6])
            shapes = [("rrect", target, bw, bh), ("capsule", np.array([target[0] - bw * 0.3, top]), strap_end, max(2.0, gsize * 0.015))]
        else:  # a lock of hair: many thin wavy strands close together
            colour = _contrasting(rng, HAIR_COLOURS, avoid, 60)
            n_strands = int(rng.integers(7, 15))
            spread = gsize * rng.uniform(0.05, 0.1)
            length = gsize * rng.uniform(0.25, 0.45)
            shapes = []
            for k in range(n_strands):
                x = target[0] - spread / 2 + spread * k / max(1, n_strands - 1)
                ts = np.linspace(-0.5, 0.5, 8)
                wave = rng.uniform(1, 4) * np.sin(ts * rng.uniform(3, 8) + rng.uniform(0, 6))
                pts = np.stack([x + wave + ts * rng.uniform(-8, 8), target[1] + ts * length], 1)
                shapes.append(("strand", pts, max(1.5, gsize * 0.012)))
        if not draw:
            continue
        for target_draw, fill in ((idraw, colour), (md, 255)):
            for shp in shapes:
                if shp[0] == "capsule":
                    _capsule(target_draw, shp[1], shp[2], shp[3], fill)
                elif shp[0] == "ellipse":
                    c, r = shp[1], shp[2]
                    target_draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=fill)
                elif shp[0] == "rrect":
                    c, bw, bh = shp[1], shp[2], shp[3]
                    target_draw.rounded_rectangle([c[0] - bw / 2, c[1] - bh / 2, c[0] + bw / 2, c[1] + bh / 2], radius=bw * 0.12, fill=fill)
                else:
                    target_draw.line([tuple(p) for p in shp[1]], fill=fill, width=int(round(shp[2])), joint="curve")
    return np.asarray(mask_img) > 127
