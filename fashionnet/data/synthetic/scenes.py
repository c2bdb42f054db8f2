"""Backgrounds: procedural studios, rooms, streets, floors and tables, and the user's own photos.

Each scene family is drawn at half resolution with PIL, given smooth noise for texture and uneven
light, and enlarged (backgrounds are out of focus in real photos anyway, and it halves the cost).
``bedroom``, ``garden`` and ``bed`` (a duvet seen from above) are held out for the style-shift
split (:mod:`.style_shift`).
User photos (``--backgrounds DIR``) are read with the project's safe loader and cropped at random.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fashionnet.data.synthetic.holders import SKINS, draw_clutter
from fashionnet.data.images import ImageLoadError, load_image

# Scene families; flat-lay ones are seen from straight above.
SCENES = ("studio", "room", "street", "floor", "table", "bedroom", "garden", "bed", "photo")
TOP_DOWN_SCENES = ("floor", "table", "bed")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

WALLS = ((236, 232, 222), (222, 218, 210), (200, 196, 190), (214, 200, 180), (182, 196, 204), (170, 170, 168), (226, 210, 200), (120, 124, 128))
CLOTHES = ((30, 30, 34), (70, 80, 110), (200, 196, 186), (120, 40, 40), (60, 90, 60), (150, 150, 152), (180, 150, 110), (40, 60, 120))


def _col(c, k: float = 1.0, rng: np.random.Generator | None = None, jitter: int = 0) -> tuple[int, int, int]:
    j = rng.integers(-jitter, jitter + 1, 3) if rng is not None and jitter else (0, 0, 0)
    return tuple(int(np.clip(v * k + d, 0, 255)) for v, d in zip(c, j))


def _rect(fn, box, **kwargs) -> None:
    """Draw a (rounded) rectangle given in any corner order; empty ones are skipped."""
    x0, y0, x1, y1 = box
    if abs(x1 - x0) >= 1 and abs(y1 - y0) >= 1:
        fn([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], **kwargs)


def _noise(rng: np.random.Generator, w: int, h: int, cell: float) -> np.ndarray:
    """Smooth noise in [0, 1] with features about ``cell`` pixels across."""
    gw, gh = max(2, int(w / cell) + 2), max(2, int(h / cell) + 2)
    small = Image.fromarray((rng.random((gh, gw)) * 255).astype(np.uint8), "L")
    return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC), np.float32) / 255.0


def _person(d: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, foot_y: float, height: float) -> None:
    """A bystander: head, torso, arms and legs in plausible clothes colours."""
    top, bottom = CLOTHES[int(rng.integers(len(CLOTHES)))], CLOTHES[int(rng.integers(len(CLOTHES)))]
    skin = SKINS[int(rng.integers(len(SKINS)))]
    u = height / 8.0
    head_y = foot_y - height
    d.ellipse([x - 0.45 * u, head_y, x + 0.45 * u, head_y + 1.1 * u], fill=skin)
    d.ellipse([x - 0.5 * u, head_y - 0.1 * u, x + 0.5 * u, head_y + 0.5 * u], fill=(40, 30, 25))
    _rect(d.rounded_rectangle, [x - 1.0 * u, head_y + 1.3 * u, x + 1.0 * u, head_y + 4.3 * u], radius=0.4 * u, fill=top)
    for side in (-1, 1):
        d.line([(x + side * 0.9 * u, head_y + 1.6 * u), (x + side * 1.2 * u, head_y + 4.4 * u)], fill=top, width=max(1, int(0.45 * u)))
        d.line([(x + side * 0.45 * u, head_y + 4.2 * u), (x + side * 0.55 * u, foot_y)], fill=bottom, width=max(1, int(0.6 * u)))


def _wall_and_floor(rng: np.random.Generator, w: int, h: int) -> tuple[Image.Image, float]:
    """An interior: painted wall, skirting and a floor in perspective; returns (image, horizon y)."""
    wall = _col(WALLS[int(rng.integers(len(WALLS)))], 1.0, rng, 8)
    horizon = float(rng.uniform(0.55, 0.85)) * h
    img = Image.new("RGB", (w, h), wall)
    d = ImageDraw.Draw(img)
    floor_kind = int(rng.integers(3))
    floor = _col(((150, 108, 70), (190, 160, 120), (120, 120, 118))[floor_kind], 1.0, rng, 12)
    _rect(d.rectangle, [0, horizon, w, h], fill=floor)
    vx = rng.uniform(0.2, 0.8) * w
    if floor_kind < 2:  # planks converging to the vanishing point, each its own tone
        ks = np.linspace(-2 * w, 3 * w, int(rng.integers(14, 26)))
        for k0, k1 in zip(ks[:-1], ks[1:]):
            quad = [(vx + (k0 - vx) * 0.08, horizon), (vx + (k1 - vx) * 0.08, horizon), (k1, h), (k0, h)]
            d.polygon(quad, fill=_col(floor, rng.uniform(0.88, 1.1)), outline=_col(floor, 0.75))
    else:  # tiles
        for k in np.linspace(-2 * w, 3 * w, 16):
            d.line([(vx + (k - vx) * 0.08, horizon), (k, h)], fill=_col(floor, 1.15), width=1)
        for t in np.linspace(0, 1, 7) ** 2:
            y = horizon + (h - horizon) * t
            d.line([(0, y), (w, y)], fill=_col(floor, 1.15), width=1)
    _rect(d.rectangle, [0, horizon - 0.025 * h, w, horizon], fill=_col(wall, 0.92))  # skirting board
    # Where wall meets floor the light is weaker: a soft dark band (ambient occlusion).
    d.rectangle([0, horizon, w, horizon + max(1.0, 0.015 * h)], fill=_col(floor, 0.7))
    return img, horizon


def _furniture(d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int, horizon: float) -> None:
    for _ in range(int(rng.integers(2, 6))):
        kind = int(rng.integers(6))
        x = rng.uniform(-0.1, 0.9) * w
        fw = rng.uniform(0.15, 0.45) * w
        if kind == 0:  # sofa
            col = _col(CLOTHES[int(rng.integers(len(CLOTHES)))], 1.1, rng, 10)
            top = horizon - rng.uniform(0.1, 0.25) * h
            _rect(d.rounded_rectangle, [x, top, x + fw, horizon + 0.06 * h], radius=0.03 * w, fill=col)
            _rect(d.rounded_rectangle, [x + 0.05 * fw, top + 0.35 * (horizon - top), x + 0.95 * fw, horizon + 0.04 * h], radius=0.02 * w, fill=_col(col, 1.12))
        elif kind == 1:  # shelf with books
            top = horizon - rng.uniform(0.3, 0.55) * h
            wood = _col((140, 100, 64), 1.0, rng, 20)
            _rect(d.rectangle, [x, top, x + fw * 0.6, horizon], fill=_col(wood, 0.7))
            for sy in np.linspace(top, horizon, 4)[:-1]:
                bx = x + 3
                while bx < x + fw * 0.6 - 4:
                    bw = rng.uniform(2, 6)
                    _rect(d.rectangle, [bx, sy + rng.uniform(2, 6), bx + bw, sy + (horizon - top) / 3 - 1], fill=_col(CLOTHES[int(rng.integers(len(CLOTHES)))], 1.2))
                    bx += bw + 1
        elif kind == 2:  # window with daylight
            top = rng.uniform(0.05, 0.3) * h
            _rect(d.rectangle, [x, top, x + fw * 0.7, top + rng.uniform(0.25, 0.45) * h], fill=_col((236, 242, 250), 1.0, rng, 8))
            d.line([(x + fw * 0.35, top), (x + fw * 0.35, top + 0.45 * h)], fill=(240, 240, 236), width=2)
        elif kind == 3:  # door
            _rect(d.rectangle, [x, horizon - 0.6 * h, x + fw * 0.5, horizon], fill=_col((210, 200, 186), 1.0, rng, 25), outline=_col((150, 140, 130)))
        elif kind == 4:  # plant in a pot
            px, py = x + fw / 2, horizon + rng.uniform(-0.02, 0.08) * h
            _rect(d.rectangle, [px - 0.04 * w, py - 0.1 * h, px + 0.04 * w, py], fill=_col((180, 120, 90), 1.0, rng, 20))
            for _ in range(14):
                lx, ly = px + rng.normal(0, 0.06) * w, py - 0.1 * h - abs(rng.normal(0, 0.12)) * h
                d.ellipse([lx - 0.03 * w, ly - 0.015 * h, lx + 0.03 * w, ly + 0.015 * h], fill=_col((50, 110, 50), rng.uniform(0.7, 1.2)))
        else:  # framed picture
            top = rng.uniform(0.1, 0.35) * h
            _rect(d.rectangle, [x, top, x + fw * 0.4, top + fw * 0.3], fill=_col((40, 40, 40), 1.0, rng, 20))
            _rect(d.rectangle, [x + 3, top + 3, x + fw * 0.4 - 3, top + fw * 0.3 - 3], fill=_col(CLOTHES[int(rng.integers(len(CLOTHES)))], 1.4, rng, 30))


def _props(d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    """Things lying next to a flat-lay, mostly near the edges: shoes, sunglasses, a phone, a cup, a leaf."""
    for _ in range(int(rng.integers(0, 4))):
        x = (rng.uniform(0, 0.18) if rng.random() < 0.5 else rng.uniform(0.82, 1.0)) * w
        y = rng.uniform(0, 1) * h
        r = rng.uniform(0.07, 0.14) * w
        col = _col(CLOTHES[int(rng.integers(len(CLOTHES)))], rng.uniform(0.8, 1.3))
        kind = int(rng.integers(5))
        if kind == 0:  # a pair of shoes
            for dx in (-0.6, 0.6):
                d.ellipse([x + dx * r - 0.5 * r, y - 1.2 * r, x + dx * r + 0.5 * r, y + 1.2 * r], fill=col, outline=_col(col, 0.6))
        elif kind == 1:  # sunglasses
            for dx in (-0.55, 0.55):
                d.ellipse([x + dx * r - 0.45 * r, y - 0.35 * r, x + dx * r + 0.45 * r, y + 0.35 * r], fill=(30, 30, 34))
            d.line([(x - 0.1 * r, y), (x + 0.1 * r, y)], fill=(30, 30, 34), width=2)
        elif kind == 2:  # a phone
            _rect(d.rounded_rectangle, [x - 0.4 * r, y - 0.8 * r, x + 0.4 * r, y + 0.8 * r], radius=0.15 * r, fill=(24, 24, 28), outline=(120, 120, 126))
        elif kind == 3:  # a cup from above
            d.ellipse([x - r * 0.6, y - r * 0.6, x + r * 0.6, y + r * 0.6], fill=(240, 240, 236), outline=(190, 190, 190))
            d.ellipse([x - r * 0.45, y - r * 0.45, x + r * 0.45, y + r * 0.45], fill=(110, 70, 40))
        else:  # a leaf
            d.ellipse([x - r, y - 0.35 * r, x + r, y + 0.35 * r], fill=_col((60, 120, 60), rng.uniform(0.8, 1.2)))


def _sky(d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int, until: float) -> None:
    top, bottom = np.array((110, 150, 205)) * rng.uniform(0.85, 1.1), np.array((205, 220, 235))
    for y in range(int(until) + 1):
        t = y / max(1.0, until)
        d.line([(0, y), (w, y)], fill=_col(top * (1 - t) + bottom * t))


def _draw_scene(scene: str, rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """One procedural scene of family ``scene`` at w x h (the caller works at half resolution)."""
    if scene == "studio":  # seamless paper: a colour, a sweep to the floor, a soft vignette
        # Mostly white and greys, as catalogues shoot; a few warm, cool or dark backdrops.
        papers = ((246, 246, 244), (236, 236, 234), (222, 222, 220), (196, 196, 196), (150, 150, 152), (228, 218, 202), (206, 216, 226), (64, 64, 68))
        base = np.array(papers[int(rng.choice(8, p=(0.24, 0.2, 0.16, 0.12, 0.08, 0.08, 0.06, 0.06)))], np.float32) + rng.uniform(-4, 4, 3)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        r = ((xs / w - rng.uniform(0.35, 0.65)) ** 2 + (ys / h - rng.uniform(0.3, 0.5)) ** 2) ** 0.5
        k = 1.05 - rng.uniform(0.1, 0.35) * r
        arr = base[None, None, :] * k[..., None]
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
        if rng.random() < 0.3:  # a studio's own kit: light stands, a rail of other garments
            draw_clutter(ImageDraw.Draw(img), rng, w, h, rng.uniform(0.85, 1.0) * h)
        return img
    if scene in ("room", "bedroom"):
        img, horizon = _wall_and_floor(rng, w, h)
        d = ImageDraw.Draw(img)
        if scene == "room":
            _furniture(d, rng, w, h, horizon)
            if rng.random() < 0.5:
                draw_clutter(d, rng, w, h, horizon)
            for _ in range(int(rng.choice([0, 0, 1, 2]))):
                _person(d, rng, rng.uniform(0, w), horizon + rng.uniform(0, 0.1) * h, rng.uniform(0.4, 0.8) * h)
        else:  # a bed: headboard, duvet with folds, pillows; a bedside table and lamp
            bx0, bx1 = rng.uniform(-0.3, 0.2) * w, rng.uniform(0.8, 1.3) * w
            sheet = _col(((240, 238, 232), (200, 210, 220), (210, 196, 180), (160, 170, 150))[int(rng.integers(4))], 1.0, rng, 8)
            _rect(d.rectangle, [bx0, horizon - 0.35 * h, bx1, horizon + 0.05 * h], fill=_col((120, 90, 64), 1.0, rng, 20))
            _rect(d.rectangle, [bx0 - 0.05 * w, horizon - 0.1 * h, bx1 + 0.05 * w, h], fill=sheet)
            for k in range(2):
                px = bx0 + (0.15 + 0.45 * k) * (bx1 - bx0)
                _rect(d.rounded_rectangle, [px, horizon - 0.16 * h, px + 0.3 * (bx1 - bx0), horizon - 0.02 * h], radius=0.03 * w, fill=_col(sheet, 1.03))
            for _ in range(int(rng.integers(8, 16))):  # soft wrinkles: short curved creases, shadow above highlight
                x, y = rng.uniform(0, w), rng.uniform(horizon, h)
                pts = [(x + t * rng.uniform(0.1, 0.25) * w, y + np.sin(t * 3 + rng.uniform(0, 3)) * 0.02 * h) for t in np.linspace(0, 1, 5)]
                d.line(pts, fill=_col(sheet, 0.86), width=int(rng.integers(1, 3)))
                d.line([(px, py + 2) for px, py in pts], fill=_col(sheet, 1.06), width=1)
        return img
    if scene == "street":
        img = Image.new("RGB", (w, h))
        d = ImageDraw.Draw(img)
        ground = rng.uniform(0.6, 0.8) * h
        _sky(d, rng, w, h, ground)
        x = -rng.uniform(0, 0.2) * w
        while x < w:
            bw = rng.uniform(0.25, 0.6) * w
            top = rng.uniform(0.0, 0.35) * h
            facade = _col(((180, 170, 160), (150, 120, 100), (200, 196, 186), (120, 120, 126))[int(rng.integers(4))], 1.0, rng, 15)
            _rect(d.rectangle, [x, top, x + bw, ground], fill=facade)
            for wy in np.arange(top + 0.05 * h, ground - 0.12 * h, 0.11 * h):
                for wx in np.arange(x + 0.04 * w, x + bw - 0.08 * w, 0.1 * w):
                    _rect(d.rectangle, [wx, wy, wx + 0.05 * w, wy + 0.06 * h], fill=_col((70, 80, 96), rng.uniform(0.8, 1.5)))
            x += bw
        _rect(d.rectangle, [0, ground, w, h], fill=_col((150, 148, 144), 1.0, rng, 15))
        for _ in range(int(rng.integers(1, 5))):
            _person(d, rng, rng.uniform(0, w), ground + rng.uniform(0, 0.25) * h, rng.uniform(0.3, 0.7) * h)
        return img
    if scene == "garden":
        img = Image.new("RGB", (w, h))
        d = ImageDraw.Draw(img)
        ground = rng.uniform(0.55, 0.8) * h
        _sky(d, rng, w, h, ground)
        for _ in range(int(rng.integers(6, 14))):  # trees and hedges as clumps of leaves
            cx, cy, r = rng.uniform(0, w), rng.uniform(0.1, 0.7) * ground, rng.uniform(0.08, 0.25) * w
            for _ in range(10):
                ox, oy = rng.normal(0, 0.5) * r, rng.normal(0, 0.4) * r
                d.ellipse([cx + ox - r * 0.5, cy + oy - r * 0.4, cx + ox + r * 0.5, cy + oy + r * 0.4], fill=_col((50, 100, 46), rng.uniform(0.6, 1.3)))
        if rng.random() < 0.6:  # a wooden fence
            fence = _col((150, 116, 80), 1.0, rng, 25)
            top = ground - rng.uniform(0.15, 0.35) * h
            for x in np.arange(0, w, 0.07 * w):
                _rect(d.rectangle, [x, top, x + 0.055 * w, ground], fill=_col(fence, rng.uniform(0.85, 1.1)))
        _rect(d.rectangle, [0, ground, w, h], fill=_col((80, 130, 60), 1.0, rng, 15))
        for _ in range(int(rng.integers(10, 30))):  # flowers
            fx, fy = rng.uniform(0, w), rng.uniform(ground, h)
            d.ellipse([fx - 1.5, fy - 1.5, fx + 1.5, fy + 1.5], fill=_col(((230, 60, 80), (250, 220, 60), (240, 240, 240))[int(rng.integers(3))]))
        return img
    if scene == "floor":  # top-down: planks, tiles, a rug or concrete
        kind = int(rng.integers(4))
        base = _col(((150, 106, 66), (196, 168, 128), (200, 200, 196), (140, 140, 138))[kind], 1.0, rng, 12)
        img = Image.new("RGB", (w, h), base)
        d = ImageDraw.Draw(img)
        if kind < 2:
            img.info["wood"] = True
            step = rng.uniform(0.1, 0.2) * w
            for x in np.arange(0, w + step, step):
                _rect(d.rectangle, [x, 0, x + step, h], fill=_col(base, rng.uniform(0.85, 1.12)))
                d.line([(x, 0), (x, h)], fill=_col(base, 0.7), width=1)
        elif kind == 2:
            step = rng.uniform(0.2, 0.35) * w
            for x in np.arange(0, w + step, step):
                d.line([(x, 0), (x, h)], fill=_col(base, 0.8), width=1)
            for y in np.arange(0, h + step, step):
                d.line([(0, y), (w, y)], fill=_col(base, 0.8), width=1)
        _props(d, rng, w, h)
        return img
    if scene == "table":  # top-down: wood, marble or white laminate, with a prop or two at the edges
        kind = int(rng.integers(3))
        base = _col(((160, 120, 80), (232, 230, 226), (246, 246, 244))[kind], 1.0, rng, 8)
        img = Image.new("RGB", (w, h), base)
        d = ImageDraw.Draw(img)
        img.info["wood"] = kind == 0
        if kind == 1:  # marble veins
            for _ in range(6):
                steps = rng.normal(0, 0.025, (24, 2)) + rng.normal(0, 0.03, 2)  # a drifting, wavering vein
                pts = np.cumsum(steps * (w, h), 0) + rng.uniform(0, 1, 2) * (w, h)
                d.line([tuple(p) for p in pts], fill=_col(base, 0.8), width=1)
        _props(d, rng, w, h)
        return img
    if scene == "bed":  # top-down: a duvet with soft folds, a pillow's edge, maybe a throw
        sheet = _col(((240, 238, 232), (206, 214, 224), (214, 200, 184), (170, 176, 160), (120, 126, 140))[int(rng.integers(5))], 1.0, rng, 8)
        img = Image.new("RGB", (w, h), sheet)
        d = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(10, 20))):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            ang = rng.uniform(0, np.pi)
            length = rng.uniform(0.15, 0.45) * w
            pts = [(x + np.cos(ang) * t * length + np.sin(t * 4) * 3, y + np.sin(ang) * t * length) for t in np.linspace(0, 1, 6)]
            d.line(pts, fill=_col(sheet, 0.84), width=int(rng.integers(2, 5)))
            d.line([(px + 2, py + 2) for px, py in pts], fill=_col(sheet, 1.07), width=2)
        if rng.random() < 0.6:
            top = rng.uniform(-0.2, 0.05) * h
            _rect(d.rounded_rectangle, [rng.uniform(-0.1, 0.3) * w, top, rng.uniform(0.6, 1.1) * w, top + 0.18 * h], radius=0.05 * w, fill=_col(sheet, 1.05))
        return img
    raise ValueError(f"unknown scene family {scene!r}; expected one of {SCENES}")


def render_scene(scene: str, size: tuple[int, int], rng: np.random.Generator, backgrounds: tuple[str, ...] = ()) -> np.ndarray:
    """A background of family ``scene`` (or a crop of a user photo for "photo"), float32 (h, w, 3)."""
    w, h = size
    if scene == "photo":
        path = backgrounds[int(rng.integers(len(backgrounds)))]
        img = _user_photo(path)
        side = rng.uniform(0.5, 1.0)
        cw, ch = max(8, int(img.width * side)), max(8, int(img.height * side))
        cw, ch = min(cw, int(ch * w / h) + 1, img.width), min(ch, int(cw * h / w) + 1, img.height)
        x0, y0 = int(rng.integers(0, img.width - cw + 1)), int(rng.integers(0, img.height - ch + 1))
        crop = img.crop((x0, y0, x0 + cw, y0 + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop = crop.resize((w, h), Image.Resampling.BILINEAR)
        blur = float(rng.uniform(0.0, 2.0))  # the background is often out of focus
        return np.asarray(crop.filter(ImageFilter.GaussianBlur(blur)) if blur > 0.3 else crop, np.float32)
    hw, hh = max(8, w // 2), max(8, h // 2)
    img = _draw_scene(scene, rng, hw, hh)
    arr = np.asarray(img, np.float32)
    # Uneven light and surface texture: large soft blotches and fine grain.
    mottle = 0.08 if scene == "studio" else 0.24
    arr = arr * (1.0 - mottle / 2 + mottle * _noise(rng, hw, hh, hw / 3))[..., None]
    if img.info.get("wood"):  # wood grain along the boards
        grain = Image.fromarray((rng.random((4, max(2, hw // 2))) * 255).astype(np.uint8), "L").resize((hw, hh), Image.Resampling.BICUBIC)
        arr = arr * (0.92 + 0.16 * np.asarray(grain, np.float32)[..., None] / 255.0)
    # Light from a window or lamp on one side: a gradient across the whole scene.
    gx, gy = rng.uniform(-0.35, 0.35), rng.uniform(-0.2, 0.2)
    ramp = 1.0 + gx * (np.arange(hw, dtype=np.float32)[None, :] / hw - 0.5) + gy * (np.arange(hh, dtype=np.float32)[:, None] / hh - 0.5)
    arr = arr * ramp[..., None]
    arr = arr + (rng.random((hh, hw, 1), dtype=np.float32) - 0.5) * 8.0
    img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")
    blur = 0.3 if scene in TOP_DOWN_SCENES else float(rng.uniform(0.4, 1.6))  # depth of field
    img = img.filter(ImageFilter.GaussianBlur(blur)).resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(img, np.float32)


@functools.lru_cache(maxsize=8)
def _user_photo(path: str) -> Image.Image:
    img = load_image(path)
    if max(img.size) > 800:  # keep the cache small; backgrounds are enlarged crops anyway
        img.thumbnail((800, 800), Image.Resampling.BILINEAR)
    return img


def readable_backgrounds(folder) -> tuple[str, ...]:
    """Image files under ``folder`` that the safe loader can read (sorted); warns naming each one that
    cannot be read and raises ValueError when none can."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"--backgrounds {root}: not a directory")
    candidates = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    good = []
    for p in candidates:
        try:
            load_image(p)
        except ImageLoadError as exc:
            warnings.warn(f"skipping unreadable background {p}: {exc.problem}", stacklevel=2)
            continue
        good.append(str(p))
    if not good:
        raise ValueError(f"--backgrounds {root}: no readable background image ({len(candidates)} image file(s) found, none could be read)")
    return tuple(good)
