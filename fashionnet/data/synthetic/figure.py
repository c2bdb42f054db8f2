"""Painting a garment and what holds it (person, mannequin, hanger, ...) into a transparent canvas.

:func:`_render_figure` draws the body or support (:mod:`.bodies`), then the garment parts back to
front with their colour, pattern, fabric texture, folds, bands, prints, decorations, seams and
buttons, lit from one side (:mod:`.shading`), then any clips or pegs over it; it reports which
landmarks a part drawn later covers (garment self-occlusion on side views).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from fashionnet.data.synthetic.geometry import CX, SHOULDER_Y, Garment, _arr
from fashionnet.data.synthetic.poses import Pose
from fashionnet.data.synthetic.items import ItemSpec, Look, Style
from fashionnet.data.synthetic.appearance import _value_noise, logo_tile, texture_light, tweed_pattern
from fashionnet.data.synthetic.bodies import BODY_MODES, draw_behind, draw_in_front
from fashionnet.data.synthetic.raster import _MaskPainter, _Patch, _apply, _disc_coverage, _erode, _shape_polygon
from fashionnet.data.synthetic.shading import bevel, highlight
from fashionnet.landmarks import LOWER_BODY, NUM_LANDMARKS, UPPER_BODY


@dataclass
class _Layers:
    rgb: np.ndarray  # (h, w, 3) float32 premultiplied colour
    alpha: np.ndarray  # (h, w) float32 coverage
    garment: np.ndarray  # (h, w) float32 garment coverage
    landmarks: np.ndarray  # (8, 2) canvas coordinates, NaN absent
    self_occluded: np.ndarray  # (8,) bool: covered by a garment part drawn over it
    front: np.ndarray | None = None  # (h, w) float32 coverage of supports drawn over the garment (clips, pegs)


def _pattern(style: Style, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """Pattern coverage in [0, 1] over the window (pattern fixed to the cloth, in figure units)."""
    period, phase = style.pattern_period, style.pattern_phase
    if style.pattern == "solid":
        return np.zeros(fx.shape, np.float32)
    if style.pattern == "stripes":
        return (((fy + phase) % period) < period * 0.45).astype(np.float32)
    if style.pattern == "checks" and style.check != "gingham":  # held-out houndstooth / plaid
        return tweed_pattern(style.check, fx, fy, period, phase)
    if style.pattern == "checks":  # gingham: half tone where one stripe crosses, full where both do
        a = ((fx + phase) % period) < period / 2
        b = ((fy + phase) % period) < period / 2
        return (a.astype(np.float32) + b.astype(np.float32)) / 2.0
    if style.pattern == "dots":
        row = np.floor((fy + phase) / period)
        ox = (fx + phase + (row % 2) * period / 2) % period - period / 2
        oy = (fy + phase) % period - period / 2
        return ((ox**2 + oy**2) < (period * 0.22) ** 2).astype(np.float32)
    # motif: small four-petal flowers on a staggered lattice, sampled from one periodic tile
    period = round(period, 1)  # few distinct tiles to cache
    tile = _motif_tile(period)
    res = _MOTIF_TILE_RES
    col = (((fx + phase) % period) * res).astype(np.int32) % tile.shape[1]
    row = (((fy + phase) % (2 * period)) * res).astype(np.int32) % tile.shape[0]
    return tile[row, col]


_MOTIF_TILE_RES = 4  # tile pixels per figure unit


@functools.lru_cache(maxsize=64)
def _motif_tile(period: float) -> np.ndarray:
    """One period (period x 2 * period figure units) of the flower lattice, as float32 coverage."""
    res = _MOTIF_TILE_RES
    w, h = max(1, round(period * res)), max(1, round(2 * period * res))
    img = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(img)
    r = period * 0.14 * res
    # Lattice points (rows offset by half a period), drawn with wrap-around neighbours.
    for row in range(-1, 3):
        for k in range(-1, 3):
            x, y = (k + (row % 2) * 0.5) * period * res, row * period * res
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                d.ellipse([x + dx * r - r, y + dy * r - r, x + dx * r + r, y + dy * r + r], fill=255)
    return np.asarray(img, dtype=np.float32) / 255.0


def _fold_field(rng: np.random.Generator, item: ItemSpec, garment: Garment, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """Multiplicative shading: folds and wrinkles (valley beside highlight), body roundness, light."""
    x0, y0, x1, y1 = garment.bbox()
    field_ = np.ones(fx.shape, np.float32)
    n = int(rng.integers(6, 12))
    ct = item.style.clothes_type
    for _ in range(n):
        if ct != LOWER_BODY and rng.random() < 0.35:  # drape from an armpit towards the centre
            side = rng.choice([-1, 1])
            p0 = np.array([CX + side * rng.uniform(40, 60), SHOULDER_Y + rng.uniform(45, 70)])
            ang = math.radians(rng.uniform(20, 60)) * -side
        else:  # mostly vertical folds rising from the hem
            p0 = np.array([rng.uniform(x0 + 10, x1 - 10), rng.uniform(y0 + (y1 - y0) * 0.4, y1)])
            ang = math.radians(rng.uniform(-25, 25)) + math.pi
        length = rng.uniform(40, 130)
        direction = np.array([math.sin(ang), math.cos(ang)])
        normal = np.array([direction[1], -direction[0]])
        sigma = rng.uniform(2.5, 6.0)
        amp = rng.uniform(0.1, 0.26) * rng.choice([-1, 1])
        dx, dy = fx - p0[0], fy - p0[1]
        along = (dx * direction[0] + dy * direction[1]) / length
        across = (dx * normal[0] + dy * normal[1]) / sigma
        taper = np.where((along > 0) & (along < 1), np.sin(np.pi * np.clip(along, 0, 1)), 0.0)
        field_ += (amp * across * np.exp(-0.5 * across**2) * taper).astype(np.float32)
    roundness = 1.0 - 0.14 * np.clip(((fx - CX) / 95.0) ** 2, 0, 1.5)
    light = 1.0 + rng.uniform(-0.1, 0.1) * (fx - CX) / 150.0 + rng.uniform(-0.06, 0.06) * (fy - 360) / 300.0
    return np.clip(field_ * roundness * light, 0.55, 1.35).astype(np.float32)


def _render_figure(
    item: ItemSpec, garment: Garment, pose: Pose, m: np.ndarray, size: tuple[int, int], look: Look, rng: np.random.Generator,
    mode: str = "worn", light: tuple[float, float, float] = (-0.6, -0.8, 0.3),
) -> _Layers:
    """Draw body or support and the garment into a transparent canvas; ``m`` maps figure -> canvas
    (similarity). ``mode`` is the presentation (bodies.py); ``light`` = (x, y, strength)."""
    w, h = size
    s = float(m[0, 0])
    light_dir, light_k = np.array(light[:2], np.float64), float(light[2])
    rng_u = rng.random(4)
    base = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw_behind(ImageDraw.Draw(base), m, item, pose, look, mode, size, rng_u)
    arr = np.asarray(base, dtype=np.float32)
    alpha = arr[..., 3] / 255.0
    body_shade = bevel(alpha, max(1.0, 9.0 * s), light_dir, light_k) if mode in BODY_MODES else 1.0
    rgb = arr[..., :3] * (alpha * body_shade)[..., None]

    # Work on the garment's window of the canvas only.
    gx0, gy0, gx1, gy1 = garment.bbox()
    (cx0, cy0), (cx1, cy1) = _apply(m, _arr((gx0, gy0), (gx1, gy1)))
    x0, y0 = max(0, int(math.floor(cx0)) - 2), max(0, int(math.floor(cy0)) - 2)
    x1, y1 = min(w, int(math.ceil(cx1)) + 3), min(h, int(math.ceil(cy1)) + 3)
    lm_canvas = _apply(m, garment.landmarks)
    garment_cov = np.zeros((h, w), np.float32)
    if x1 <= x0 or y1 <= y0:  # garment entirely off this canvas
        return _Layers(rgb, alpha, garment_cov, lm_canvas, np.zeros(NUM_LANDMARKS, bool))
    ww, wh = x1 - x0, y1 - y0
    painter = _MaskPainter((x0, y0), (ww, wh))
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    fx, fy = (xs - m[0, 2]) / s, (ys - m[1, 2]) / s
    st = item.style
    px_ = CX + (fx - CX) / pose.compress if pose.view == "side" else fx  # pattern foreshortens too
    # Smooth fields (drape, folds, broad undulation, dye mottle) vary over tens of figure units:
    # computed on a quarter-resolution grid and enlarged, which is several times cheaper.
    shade_rng = np.random.default_rng(rng.integers(1 << 63))
    small = (max(2, ww // 4), max(2, wh // 4))
    sy_, sx_ = np.mgrid[0 : small[1], 0 : small[0]].astype(np.float32)
    sfx = (x0 + (sx_ + 0.5) * ww / small[0] - 0.5 - m[0, 2]) / s
    sfy = (y0 + (sy_ + 0.5) * wh / small[1] - 0.5 - m[1, 2]) / s
    spx = CX + (sfx - CX) / pose.compress if pose.view == "side" else sfx
    seed = float(st.pattern_phase) + (pose.sway + pose.arms[0]) * 0.37

    def enlarge(field_: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(field_.astype(np.float32), mode="F").resize((ww, wh), Image.Resampling.BILINEAR), np.float32)

    # Cloth drapes: the print wanders a few units with the folds instead of staying ruler-straight.
    drape_x = enlarge((_value_noise(spx, sfy, 45.0, seed) - 0.5) * 7.0)
    drape_y = enlarge((_value_noise(spx, sfy, 45.0, seed + 3.0) - 0.5) * 7.0)
    pat = _pattern(st, px_ + drape_x, fy + drape_y)
    colour = np.asarray(st.rgb, np.float32)
    pcol = np.asarray(st.pattern_rgb, np.float32)
    tex = colour + (pcol - colour) * pat[..., None]
    # Per-pixel brightness: fabric texture (fixed to the cloth), part, seams, folds.
    mottle = enlarge(_value_noise(spx, sfy, 40.0, float(st.pattern_phase)) - 0.5)
    light = texture_light(st.texture, px_, fy, s, float(st.pattern_phase), mottle)
    smooth = _fold_field(shade_rng, item, garment, sfx, sfy) * (0.9 + 0.2 * _value_noise(spx, sfy, 70.0, seed + 5.0))
    light *= enlarge(smooth)

    # Composite the parts back to front into 2-D maps: coverage, part brightness, darkening, and
    # an overlay (bands, prints, buttons) with its own colour. Each part hides what lies under it.
    cov = np.zeros((wh, ww), np.float32)
    bright = np.ones((wh, ww), np.float32)
    dark = np.ones((wh, ww), np.float32)
    over = np.zeros((wh, ww, 3), np.float32)
    over_a = np.zeros((wh, ww), np.float32)
    part_masks = []

    def overlay(patch, mask, rgb_colour):
        if patch is None:
            return
        a = patch.mask * mask[patch.rows, patch.cols]
        o = over[patch.rows, patch.cols]
        o += (np.asarray(rgb_colour, np.float32) - o) * a[..., None]
        oa = over_a[patch.rows, patch.cols]
        oa += (1.0 - oa) * a

    def darken(patch, mask, amount):
        if patch is not None:
            dark[patch.rows, patch.cols] *= 1.0 - amount * patch.mask * mask[patch.rows, patch.cols]

    for name, poly, brightness in garment.parts:
        cpoly = _apply(m, poly)
        mask = painter.polygon(cpoly)
        keep = 1.0 - mask
        cov[:] = mask + cov * keep
        bright[:] = brightness * mask + bright * keep
        dark[:] = mask + dark * keep
        over_a *= keep
        if name == "body":
            for lapel in garment.lapels:
                darken(painter.local_polygons([_apply(m, lapel)]), mask, 0.25)
        for band in (b for b in garment.bands if b.owner == name):
            bw = band.band.width * s
            if band.polygon is not None:
                patch = painter.local_polygons([_apply(m, band.polygon)])
            else:
                patch = painter.local_line(_apply(m, band.line), bw)
            overlay(patch, mask, band.band.colour)
            if band.band.stripe is not None and band.stripe is not None and patch is not None:
                # Sporty stripe in the inner part of the band, away from the landmark at its edge.
                stripe = painter.local_line(_apply(m, band.stripe), max(1.2, band.band.width * 0.18) * s)
                if stripe is not None:
                    full = np.zeros((wh, ww), np.float32)
                    full[patch.rows, patch.cols] = patch.mask
                    stripe.mask *= full[stripe.rows, stripe.cols]
                overlay(stripe, mask, band.band.stripe)
        if name == garment.print_part:
            for shape, centre, size_, pc in garment.prints:
                overlay(painter.local_polygons([_apply(m, q) for q in _shape_polygon(shape, centre, size_)]), mask, pc)
        for owner, line, width in garment.seams:
            if owner == name:
                darken(painter.local_line(_apply(m, line), width * s), mask, 0.55 if width > 1.5 else 0.3)
        if name == "body":
            _decorate(item, garment, pose, m, painter, mask, overlay, darken)
        if name == "body":
            for b in garment.buttons:
                q = _apply(m, _arr(b - 3.6, b + 3.6))
                overlay(painter.local(q, lambda d, px, q=q: d.ellipse([*px(q)[0], *px(q)[1]], fill=255)), mask, colour * 0.45 + 20)
        # A thin darker seam along the part outline separates overlapping parts.
        dark *= 1.0 - 0.3 * (mask - _erode(mask)) * mask
        part_masks.append((name, mask))
    # Round, lit cloth: bevel from the garment outline and from each part's own outline.
    shade = bevel(cov, max(1.0, 7.0 * s), light_dir, light_k * 0.8)
    col = (tex + (over - tex) * over_a[..., None]) * (light * bright * dark * shade)[..., None]
    col += highlight(shade, {"woven": 0.15, "jersey": 0.06, "denim": 0.04}.get(st.texture, 0.0))[..., None]  # sheen
    win_rgb = rgb[y0:y1, x0:x1]
    win_rgb[:] = np.clip(col, 0, 255) * cov[..., None] + win_rgb * (1.0 - cov[..., None])
    alpha[y0:y1, x0:x1] = cov + alpha[y0:y1, x0:x1] * (1.0 - cov)
    garment_cov[y0:y1, x0:x1] = cov

    # Garment self-occlusion: a landmark is hidden when parts drawn after its own part cover it.
    covered_by_later = {}
    for i, (name, _) in enumerate(part_masks):
        acc = np.zeros((wh, ww), np.float32)
        for _, later in part_masks[i + 1 :]:
            acc = np.maximum(acc, later)
        covered_by_later[name] = acc
    self_occ = np.zeros(NUM_LANDMARKS, bool)
    radius = max(1.5, 4.0 * s)
    for j in range(NUM_LANDMARKS):
        owner = garment.owners[j]
        if owner is None or np.isnan(lm_canvas[j, 0]):
            continue
        x, y = lm_canvas[j] - (x0, y0)
        occ = covered_by_later[owner]
        rx, ry = int(round(x)), int(round(y))
        inside = 0 <= rx < ww and 0 <= ry < wh
        if inside and occ[ry, rx] > 0.5 and _disc_coverage(occ, x, y, radius) >= 0.5:
            self_occ[j] = True
    front = _draw_front(item, pose, m, size, mode, rng_u, rgb, alpha, look, light_dir, light_k)
    return _Layers(rgb, alpha, garment_cov, lm_canvas, self_occ, front)


def _draw_front(item, pose, m, size, mode, rng_u, rgb: np.ndarray, alpha: np.ndarray, look, light_dir, light_k) -> np.ndarray | None:
    """Clips, pegs, an untucked top over the garment: painted (lit) into ``rgb``/``alpha`` in place;
    returns their coverage."""
    w, h = size
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    mask_img = Image.new("L", (w, h), 0)
    draw_in_front([(ImageDraw.Draw(img), None), (ImageDraw.Draw(mask_img), 255)], m, item, pose, mode, rng_u, look)
    front = np.asarray(mask_img, np.float32) / 255.0
    if not front.any():
        return None
    arr = np.asarray(img, np.float32)
    a = arr[..., 3] / 255.0
    lit = arr[..., :3] * bevel(a, max(1.0, 6.0 * float(m[0, 0])), light_dir, light_k)[..., None]
    rgb[:] = lit * a[..., None] + rgb * (1.0 - a[..., None])
    alpha[:] = a + alpha * (1.0 - a)
    return front


def _decorate(item: ItemSpec, garment: Garment, pose: Pose, m, painter, mask, overlay, darken) -> None:
    """Family-wide decoration on the front of the body part, clear of the landmark regions:
    a chest logo or text print, patch pockets, a zip or a polo placket."""
    st = item.style
    if pose.view == "back":
        return
    s = float(m[0, 0])
    c = pose.compress if pose.view == "side" else 1.0

    def sq(pts):
        pts = np.array(pts, np.float64)
        pts[..., 0] = CX + (pts[..., 0] - CX) * c
        return _apply(m, pts)

    ink = tuple(int(v) for v in (np.asarray(st.pattern_rgb) if st.pattern == "solid" else np.asarray(st.rgb) * 0.4 + 150))
    if st.logo is not None and st.clothes_type != LOWER_BODY:
        tile = logo_tile(*st.logo)
        cx, cy = CX, SHOULDER_Y + st.dims.get("neck_depth", 20) + 42
        corners = sq([(cx - 20, cy - 10), (cx + 20, cy + 10)])
        (ax, ay), (bx, by) = corners
        box = painter._box(corners, 0.0)
        if box is not None and bx - ax > 4:
            bx0, by0, bx1, by1 = box
            ys_ = np.arange(by0, by1, dtype=np.float32)[:, None] + painter.y0
            xs_ = np.arange(bx0, bx1, dtype=np.float32)[None, :] + painter.x0
            u = ((xs_ - ax) / (bx - ax) * tile.shape[1]).astype(np.int32)
            v = ((ys_ - ay) / (by - ay) * tile.shape[0]).astype(np.int32)
            ok = (u >= 0) & (u < tile.shape[1]) & (v >= 0) & (v < tile.shape[0])
            cov = np.where(ok, tile[np.clip(v, 0, tile.shape[0] - 1), np.clip(u, 0, tile.shape[1] - 1)], 0.0).astype(np.float32)
            overlay(_Patch(slice(by0, by1), slice(bx0, bx1), cov), mask, ink)
    def seam(patch):  # denim has contrasting topstitching; other cloth a darker seam line
        if st.texture == "denim":
            overlay(patch, mask, (196, 150, 70))
        else:
            darken(patch, mask, 0.42)

    if st.pockets:
        if st.category == "Jackets":
            hy, hh = st.dims["hem_y"], st.dims["hem_half"]
            for side in (-1, 1):
                x0 = CX + side * hh * 0.62
                rect = sq([(x0 - 17, hy - 78), (x0 + 17, hy - 78), (x0 + 17, hy - 40), (x0 - 17, hy - 40), (x0 - 17, hy - 78)])
                seam(painter.local_line(rect, max(1.0, 1.6 * s)))
        elif st.clothes_type != UPPER_BODY:
            wy, wh = st.dims["waist_y"], st.dims["waist_half"]
            for side in (-1, 1):  # slanted front pockets below the waistband
                line = sq([(CX + side * (wh - 20), wy + 16), (CX + side * (wh + 3), wy + 56)])
                seam(painter.local_line(line, max(1.0, 1.6 * s)))
    if st.zip and not st.buttons and st.category == "Jackets":
        top = SHOULDER_Y + st.dims["neck_depth"] + 2
        line = sq([(CX + 1.5, top), (CX + 1.5, st.dims["hem_y"] - 2)])
        overlay(painter.local_line(line, max(1.0, 2.2 * s)), mask, (150, 150, 156))
        tab = sq([(CX + 1.5, top + 6)])[0]
        overlay(painter.local(np.array([tab - 3 * s, tab + 3 * s]), lambda d, px: d.rectangle([*px([tab - 2.5 * s])[0], *px([tab + 2.5 * s])[0]], fill=255)), mask, (190, 190, 196))
    if st.collar == "polo":
        nh = st.dims["neck_half"]
        for side in (-1, 1):  # collar flaps lying on the chest, inside the neckline ends
            flap = sq([(CX + side * 2, SHOULDER_Y + 12), (CX + side * (nh - 2), SHOULDER_Y + 9), (CX + side * (nh - 8), SHOULDER_Y + 30)])
            darken(painter.local_polygons([flap]), mask, 0.18)
            darken(painter.local_line(np.concatenate([flap, flap[:1]]), max(1.0, 1.2 * s)), mask, 0.35)
