"""Photos of an item with their labels: In-shop studio shots and cluttered consumer photos.

:func:`render_shop_image` frames the figure on a studio background; :func:`render_consumer_image`
adds clutter, scale, rotation, perspective, truncation, occluders and photometric degradation.
Visibility comes from the masks actually drawn: a landmark is occluded when what covers it covers
at least half of a small disc around it, and truncated (coordinate clamped) outside the frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fashionnet.data.synthetic.figure import _render_figure
from fashionnet.data.synthetic.geometry import CX, FIG_H, FIG_W, _arr, build_garment, sample_pose
from fashionnet.data.synthetic.items import ItemSpec, _sample_look
from fashionnet.data.synthetic.raster import _apply, _capsule, _disc_coverage, _homography, _sim, _warp
from fashionnet.data.synthetic.vocabulary import (
    COLOURS,
    COMPANION_COLOURS,
    CONSUMER_SIDE_RANGE,
    HAIR_COLOURS,
    SHOP_SIZE,
    SKIN_TONES,
    VIEW_CODES,
)
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
    occluder_mask: np.ndarray  # (H, W) bool, the occluders drawn on top (consumer photos)
    jpeg_quality: int


def _finish_labels(
    lm_frame: np.ndarray, self_occ: np.ndarray, clothes_type: int, size: tuple[int, int], occluders: np.ndarray | None, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Round, decide visibility from the drawn masks, clamp truncated points to the frame."""
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


def render_shop_image(item: ItemSpec, view: str, rng: np.random.Generator) -> RenderedImage:
    """A 256 x 256 studio photo: clean light background, garment centred, ``view`` in VIEW_CODES."""
    if view not in VIEW_CODES:
        raise ValueError(f"unknown view {view!r}; expected one of {sorted(VIEW_CODES)}")
    pose = sample_pose(rng, item, {"front": "front", "full": "front", "additional": "front", "side": "side", "back": "back"}[view])
    garment = build_garment(item, pose)
    gx0, gy0, gx1, gy1 = garment.bbox()
    span = max(gx1 - gx0, gy1 - gy0)
    centre = np.array([(gx0 + gx1) / 2, (gy0 + gy1) / 2])
    if view == "full":
        side = rng.uniform(740, 790)
        centre = np.array([CX, 372.0]) + rng.uniform(-8, 8, 2)
    elif view == "additional":  # zoom-in on a landmark region
        side = span * rng.uniform(0.5, 0.7)
        present = [j for j in CLOTHES_TYPE_SLOTS[item.style.clothes_type]]
        centre = garment.landmarks[int(rng.choice(present))] + rng.uniform(-0.1, 0.1, 2) * side
    else:
        side = span * rng.uniform(1.12, 1.28)
        centre = centre + rng.uniform(-0.03, 0.03, 2) * side
    scale = SHOP_SIZE / side
    m = _sim(scale, SHOP_SIZE / 2 - 0.5 - centre[0] * scale, SHOP_SIZE / 2 - 0.5 - centre[1] * scale)
    layers = _render_figure(item, garment, pose, m, (SHOP_SIZE, SHOP_SIZE), item.look, rng)
    bg = _studio_background(item.look.background, SHOP_SIZE, rng)
    img = layers.rgb + bg * (1.0 - layers.alpha[..., None])
    image = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB")
    garment_mask = layers.garment > 0.5
    lm, vis = _finish_labels(layers.landmarks, layers.self_occluded, item.style.clothes_type, (SHOP_SIZE, SHOP_SIZE), None, 0.0)
    n_present = len(CLOTHES_TYPE_SLOTS[item.style.clothes_type])
    n_trunc = int((vis == TRUNCATED).sum())
    if view == "additional":
        variation = 5 if n_trunc * 2 >= n_present else 4
    else:
        variation = {"front": 1, "full": 1, "back": 2, "side": 3}[view]
    quality = int(rng.integers(90, 96))
    return RenderedImage(image, lm, vis, _bbox_of(garment_mask), variation, garment_mask, np.zeros_like(garment_mask), quality)


def _studio_background(colour, size: int, rng: np.random.Generator) -> np.ndarray:
    ramp = np.linspace(1.0 + rng.uniform(0, 0.02), 1.0 - rng.uniform(0.02, 0.05), size, dtype=np.float32)
    bg = np.asarray(colour, np.float32)[None, None, :] * ramp[:, None, None]
    return np.broadcast_to(np.clip(bg, 0, 255), (size, size, 3))


def _clutter(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A busy indoor/outdoor-ish background: gradient, furniture-like shapes, textures, blotches.

    Drawn at half resolution and enlarged: cheaper, and backgrounds are out of focus anyway.
    """
    full = size
    w, h = (max(8, size[0] // 2), max(8, size[1] // 2))
    c0, c1 = rng.integers(40, 230, 3), rng.integers(40, 230, 3)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    arr = c0[None, None, :] * (1 - t) + c1[None, None, :] * t
    arr = np.broadcast_to(arr, (h, w, 3)).copy()
    img = Image.fromarray(arr.astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(6, 15))):
        kind = rng.choice(["rect", "ellipse", "poly", "lines", "stripes"])
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y = rng.uniform(-0.2, 1.0) * w, rng.uniform(-0.2, 1.0) * h
        bw, bh = rng.uniform(0.1, 0.6) * w, rng.uniform(0.1, 0.6) * h
        if kind == "rect":
            d.rectangle([x, y, x + bw, y + bh], fill=col)
        elif kind == "ellipse":
            d.ellipse([x, y, x + bw, y + bh], fill=col)
        elif kind == "poly":
            pts = [(x + rng.uniform(0, bw), y + rng.uniform(0, bh)) for _ in range(int(rng.integers(3, 6)))]
            d.polygon(pts, fill=col)
        elif kind == "lines":
            for _ in range(int(rng.integers(2, 6))):
                ends = [(rng.uniform(0, w), rng.uniform(0, h)) for _ in range(2)]
                d.line(ends, fill=col, width=int(rng.integers(1, 4)))
        else:
            step = rng.uniform(3, 7)
            col2 = tuple(int(v) for v in rng.integers(0, 256, 3))
            d.rectangle([x, y, x + bw, y + bh], fill=col2)
            for k in np.arange(0, bw, step):
                d.line([(x + k, y), (x + k, y + bh)], fill=col, width=max(1, int(step / 3)))
    blotch = rng.random((max(2, h // 12), max(2, w // 12))).astype(np.float32)
    blotch = np.asarray(Image.fromarray(blotch, "F").resize((w, h), Image.Resampling.BILINEAR), np.float32)
    arr = np.asarray(img, np.float32) * (0.85 + 0.3 * blotch[..., None])
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    radius = float(rng.uniform(0.0, 1.1))
    if radius > 0.2:
        img = img.filter(ImageFilter.GaussianBlur(radius))
    return img.resize(full, Image.Resampling.BILINEAR)


def _contrasting(rng: np.random.Generator, candidates, avoid, min_dist: float = 80.0) -> tuple[int, int, int]:
    """A random candidate colour at least ``min_dist`` from every ``avoid`` colour (else the farthest)."""
    cand = np.asarray(candidates, np.float64)
    nearest = np.linalg.norm(cand[:, None, :] - np.asarray(avoid, np.float64)[None, :, :], axis=-1).min(axis=1)
    ok = np.flatnonzero(nearest >= min_dist)
    pick = ok[int(rng.integers(len(ok)))] if len(ok) else int(nearest.argmax())
    return tuple(int(v) for v in cand[pick])


def _garment_colours(item: ItemSpec) -> list[tuple[int, int, int]]:
    d = item.details
    cols = [COLOURS[item.style.colour], COLOURS[item.style.pattern_colour], d.print_colour]
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


def render_consumer_image(item: ItemSpec, rng: np.random.Generator, draw_occluders: bool = True, degrade: bool = True) -> RenderedImage:
    """A consumer photo: clutter, scale 0.3-1.0, rotation, perspective, truncation, occluders,
    colour cast, blur, noise (JPEG quality is returned for the writer).

    ``draw_occluders`` / ``degrade`` = False render the identical scene without occluders /
    without photometric degradation (all random numbers are still drawn), for checks.
    """
    fw, fh = (int(v) for v in rng.integers(CONSUMER_SIDE_RANGE[0], CONSUMER_SIDE_RANGE[1] + 1, 2))
    pose = sample_pose(rng, item, "front")
    garment = build_garment(item, pose)
    look = replace(_sample_look(rng, item.style.gender), background=(0, 0, 0))  # a different person
    gx0, gy0, gx1, gy1 = garment.bbox()
    gw, gh = gx1 - gx0, gy1 - gy0
    gc = np.array([(gx0 + gx1) / 2, (gy0 + gy1) / 2])
    frac = rng.uniform(0.3, 1.0) if rng.random() < 0.85 else rng.uniform(1.0, 1.35)  # some close-ups
    k = frac * min(fw / gw, fh / gh)
    offset = rng.normal(0, 0.08, 2) * (fw, fh)
    if rng.random() < 0.3:  # push part of the garment out of the frame
        offset += rng.choice([-1, 1], 2) * rng.uniform(0.15, 0.4, 2) * (fw, fh) * (rng.random(2) < 0.6)
    rot = float(np.clip(rng.normal(0, 9), -25, 25))
    a = math.radians(rot)
    rmat = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])
    centre = np.array([fw / 2 - 0.5, fh / 2 - 0.5]) + offset
    affine = _sim(1.0, centre[0], centre[1]) @ rmat @ _sim(k, -gc[0] * k, -gc[1] * k)
    persp = rng.uniform(0.0, 0.09)
    corners = _arr((0, 0), (fw - 1, 0), (fw - 1, fh - 1), (0, fh - 1))
    jitter = rng.uniform(-1, 1, (4, 2)) * persp * (fw, fh)
    h_total = _homography(corners, corners + jitter) @ affine
    # Canvas: the part of the figure frame that lands in the photo, at the photo's resolution.
    pre = _apply(np.linalg.inv(h_total), corners)
    fx0, fy0 = np.maximum(pre.min(0), (-40, -40))
    fx1, fy1 = np.minimum(pre.max(0), (FIG_W + 40, FIG_H + 40))
    m = _sim(k, -fx0 * k, -fy0 * k)
    cw, ch = max(2, int(math.ceil((fx1 - fx0) * k)) + 2), max(2, int(math.ceil((fy1 - fy0) * k)) + 2)
    layers = _render_figure(item, garment, pose, m, (cw, ch), look, rng)
    warp = h_total @ np.linalg.inv(m)  # canvas -> photo, applied to pixels and landmarks alike
    premult = _warp(Image.fromarray(np.clip(layers.rgb + 0.5, 0, 255).astype(np.uint8), "RGB"), warp, (fw, fh))
    alpha = np.asarray(_warp(Image.fromarray((layers.alpha * 255 + 0.5).astype(np.uint8), "L"), warp, (fw, fh)), np.float32) / 255.0
    gmask = np.asarray(_warp(Image.fromarray((layers.garment * 255 + 0.5).astype(np.uint8), "L"), warp, (fw, fh))) > 127
    background = np.asarray(_clutter(rng, (fw, fh)), np.float32)
    img = np.asarray(premult, np.float32) + background * (1 - alpha[..., None])
    image = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB")
    lm_frame = _apply(warp, layers.landmarks)
    gsize = max(gw, gh) * k
    occluders = _draw_occluders(rng, item, lm_frame, gmask, (fw, fh), gsize, draw_occluders, image)
    # Photometric changes: colour cast, exposure, light fall-off, gamma, blur, sensor noise.
    gains = rng.uniform(0.8, 1.2, 3)
    gains = gains / gains.mean() * rng.uniform(0.7, 1.2)
    ramp_dir = rng.uniform(-1, 1, 2)
    across = np.arange(fw, dtype=np.float32)[None, :] / fw - 0.5
    down = np.arange(fh, dtype=np.float32)[:, None] / fh - 0.5
    ramp = 1.0 + 0.25 * (ramp_dir[0] * across + ramp_dir[1] * down)
    gamma = rng.uniform(0.8, 1.25)
    blur = rng.uniform(0.3, 1.6) if rng.random() < 0.6 else 0.0
    noise_sigma = rng.uniform(1.0, 9.0)
    noise_rng = np.random.default_rng(rng.integers(1 << 63))
    quality = int(rng.integers(35, 91))
    if degrade:
        lit = np.asarray(image, np.float32) * ramp[..., None]
        image = Image.fromarray(np.clip(lit + 0.5, 0, 255).astype(np.uint8), "RGB")
        levels = np.arange(256, dtype=np.float64) / 255.0
        lut = [int(v) for g in gains for v in np.clip(np.clip(levels * g, 0, 1) ** gamma * 255.0 + 0.5, 0, 255)]
        image = image.point(lut)  # colour cast and gamma as one lookup table
        if blur > 0:
            image = image.filter(ImageFilter.GaussianBlur(blur))
        noise = noise_rng.standard_normal((fh, fw, 3), dtype=np.float32) * noise_sigma
        image = Image.fromarray(np.clip(np.asarray(image, np.float32) + noise + 0.5, 0, 255).astype(np.uint8), "RGB")
    radius = max(2.0, 0.025 * gsize)
    lm, vis = _finish_labels(lm_frame, layers.self_occluded, item.style.clothes_type, (fw, fh), occluders, radius)
    present = len(CLOTHES_TYPE_SLOTS[item.style.clothes_type])
    n_trunc = int((vis == TRUNCATED).sum())
    if n_trunc * 2 >= present:
        variation = 5
    elif n_trunc:
        variation = 4
    elif abs(rot) > 15 or persp > 0.06:
        variation = 3
    elif abs(rot) > 7 or persp > 0.03 or (vis == OCCLUDED).any():
        variation = 2
    else:
        variation = 1
    return RenderedImage(image, lm, vis, _bbox_of(gmask), variation, gmask, occluders, quality)
