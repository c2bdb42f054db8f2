"""Garment appearance: colour palettes, fabric textures and prints as real catalogues have them.

A garment's look is drawn from a *palette family* (its shades) and a *texture family* (the weave or
knit its pixels show). Catalogues are mostly neutrals (black, white, grey, navy, denim, beige) with
some muted and saturated colours; the style-shift test set uses an earth-tone palette and a
tweed-check texture family that the in-style datasets never use (see :mod:`.style_shift`).

Every texture is a function of *figure* coordinates, so it sticks to the cloth under any camera, and
fades out where the photo's scale would alias it.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw

# Palette families: (colour attribute name, RGB). The attribute name is the coarse colour word a
# shop would file the garment under; the RGB is the exact shade. Neutrals dominate, as in shops.
PALETTES: dict[str, tuple[tuple[str, tuple[int, int, int]], ...]] = {
    "neutral": (
        ("black", (26, 26, 30)), ("black", (40, 39, 44)), ("white", (238, 237, 232)), ("white", (228, 224, 214)),
        ("grey", (132, 132, 136)), ("grey", (84, 86, 92)), ("grey", (176, 176, 178)), ("navy", (28, 36, 70)),
        ("navy", (40, 50, 88)), ("blue", (66, 92, 132)), ("blue", (96, 124, 160)), ("beige", (208, 192, 160)),
        ("beige", (192, 176, 146)),
    ),
    "muted": (
        ("pink", (204, 158, 164)), ("green", (124, 142, 120)), ("blue", (112, 132, 160)), ("red", (120, 38, 50)),
        ("purple", (118, 100, 128)), ("grey", (148, 140, 132)),
    ),
    "saturated": (
        ("red", (198, 30, 40)), ("yellow", (238, 202, 40)), ("green", (30, 140, 72)), ("blue", (40, 90, 206)),
        ("pink", (238, 118, 170)), ("purple", (108, 44, 150)), ("orange", (242, 120, 30)),
    ),
    # Held out for the style-shift split: earth tones (rust, terracotta, mustard, olive, camel, tan).
    "earth": (
        ("orange", (176, 84, 40)), ("red", (158, 70, 50)), ("yellow", (192, 148, 48)), ("green", (104, 102, 50)),
        ("beige", (174, 134, 86)), ("brown", (112, 74, 46)), ("brown", (146, 100, 62)),
    ),
}
IN_STYLE_PALETTE_WEIGHTS = {"neutral": 0.6, "muted": 0.2, "saturated": 0.2}

# Texture families -> the fabric attribute they carry (DeepFashion's "denim" / "knit"), or None.
TEXTURES: dict[str, str | None] = {
    "woven": None, "jersey": None, "knit": "knit", "denim": "denim", "wool": None,
    "tweed": None,  # held out: houndstooth and plaid checks on a grainy twill
}
# Which in-style texture families suit a category (first entries most likely).
_TEXTURE_CHOICES = {
    "Tees": ("jersey", "woven", "knit"), "Tanks": ("jersey", "knit"), "Long_Sleeve": ("jersey", "knit", "wool", "woven"),
    "Jackets": ("woven", "denim", "wool"), "Skirts": ("woven", "denim", "wool"), "Trousers": ("woven", "denim", "wool"),
    "Shorts": ("woven", "denim", "jersey"), "Dresses": ("woven", "jersey", "knit"), "Jumpsuits": ("woven", "denim", "jersey"),
}


def sample_palette_family(rng: np.random.Generator) -> str:
    names = list(IN_STYLE_PALETTE_WEIGHTS)
    return str(rng.choice(names, p=list(IN_STYLE_PALETTE_WEIGHTS.values())))


def sample_texture_family(rng: np.random.Generator, category: str) -> str:
    choices = _TEXTURE_CHOICES[category]
    weights = np.array([3.0] + [1.0] * (len(choices) - 1))
    return str(rng.choice(choices, p=weights / weights.sum()))


def pick_shade(rng: np.random.Generator, palette: str, avoid=(), min_dist: float = 80.0) -> tuple[str, tuple[int, int, int]]:
    """A (name, jittered RGB) of ``palette`` at least ``min_dist`` from every colour in ``avoid`` (else the farthest)."""
    shades = PALETTES[palette]
    order = rng.permutation(len(shades))
    jitter = rng.integers(-6, 7, 3)
    best, best_d = None, -1.0
    for i in order:
        name, rgb = shades[i]
        d = min((float(np.linalg.norm(np.subtract(rgb, a))) for a in avoid), default=1e9)
        if d >= min_dist:
            best = (name, rgb)
            break
        if d > best_d:
            best, best_d = (name, rgb), d
    name, rgb = best
    return name, tuple(int(np.clip(v + j, 0, 255)) for v, j in zip(rgb, jitter))


def detail_colours(palette: str) -> list[tuple[int, int, int]]:
    """Colours for trims and prints: the item's own palette family plus black and white (in style)."""
    cols = [rgb for _, rgb in PALETTES[palette]]
    if palette != "earth":
        cols += [rgb for _, rgb in PALETTES["neutral"][:4]] + [rgb for _, rgb in PALETTES["saturated"]]
    return cols


# --- Fabric textures (luminance multipliers fixed to the cloth) ---------------------------------


def _hash_noise(ix: np.ndarray, iy: np.ndarray, seed: float) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) per integer cell (stable under any camera)."""
    v = np.sin(ix * 12.9898 + iy * 78.233 + seed * 37.719) * 43758.5453
    return (v - np.floor(v)).astype(np.float32)


def _value_noise(fx: np.ndarray, fy: np.ndarray, cell: float, seed: float) -> np.ndarray:
    """Smooth value noise of the given cell size (figure units), bilinear between lattice values."""
    gx, gy = fx / cell, fy / cell
    ix, iy = np.floor(gx), np.floor(gy)
    tx, ty = (gx - ix).astype(np.float32), (gy - iy).astype(np.float32)
    tx, ty = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty)
    if ix.size == 0:
        return np.zeros(fx.shape, np.float32)
    # Hash the few lattice points once, then look them up per pixel (sin per pixel is the cost).
    x0, y0 = ix.min(), iy.min()
    lattice = _hash_noise(np.arange(x0, ix.max() + 2)[None, :], np.arange(y0, iy.max() + 2)[:, None], seed)
    xi, yi = (ix - x0).astype(np.intp), (iy - y0).astype(np.intp)
    a, b = lattice[yi, xi], lattice[yi, xi + 1]
    c, d = lattice[yi + 1, xi], lattice[yi + 1, xi + 1]
    return (a + (b - a) * tx) * (1 - ty) + (c + (d - c) * tx) * ty


def texture_light(texture: str, fx: np.ndarray, fy: np.ndarray, scale: float, seed: float, mottle: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel luminance factor (about 0.8-1.15) of a texture family; ``scale`` = pixels per figure
    unit; ``mottle``: the smooth dye unevenness in [-0.5, 0.5] if the caller computed it already."""

    def fade(period: float) -> float:  # detail finer than ~2 px aliases: fade it out
        return float(np.clip((scale * period - 2.0) / 2.0, 0.0, 1.0))

    out = np.ones(fx.shape, np.float32)
    if mottle is None:
        mottle = _value_noise(fx, fy, 40.0, seed) - 0.5  # uneven dye and wear, all fabrics
    out += 0.06 * mottle
    if texture == "jersey":
        out -= 0.05 * fade(3.0) * ((fx % 3.0) < 1.2)
    elif texture == "knit":  # ribbed columns with a visible stitch grain
        rib = np.abs(((fx % 6.0) / 6.0) - 0.5) * 2.0
        out *= 1.0 - 0.14 * fade(6.0) * rib
        out -= 0.05 * fade(3.0) * ((fy % 3.0) < 1.0)
    elif texture == "denim":  # twill diagonals, fading of indigo along the grain
        out -= 0.09 * fade(4.0) * (((fx + fy) % 4.0) < 1.6)
        out += 0.14 * (_value_noise(fx * 0.25, fy * 3.0, 30.0, seed + 1) - 0.5)
    elif texture == "wool":  # heathered grain
        out += 0.16 * fade(2.5) * (_hash_noise(np.floor(fx / 2.5), np.floor(fy / 2.5), seed) - 0.5)
    elif texture == "tweed":
        out += 0.2 * fade(2.5) * (_hash_noise(np.floor(fx / 2.5), np.floor(fy / 2.5), seed) - 0.5)
        out -= 0.06 * fade(4.0) * (((fx - fy) % 4.0) < 1.6)
    else:  # woven: a faint plain weave
        out -= 0.04 * fade(3.0) * (((fx // 1.5) + (fy // 1.5)) % 2)
    return out


def tweed_pattern(kind: str, fx: np.ndarray, fy: np.ndarray, period: float, phase: float) -> np.ndarray:
    """Held-out check patterns (coverage of the second colour, 0..1): houndstooth or plaid."""
    if kind == "houndstooth":
        u = ((fx + phase) % period) / period
        v = ((fy + phase) % period) / period
        a, b = u < 0.5, v < 0.5
        teeth = (((u - v) % 0.5) < 0.25) & (a != b)
        return ((a == b) | teeth).astype(np.float32)
    # plaid: broad crossing bands at half tone, thin lines at full tone
    u = (fx + phase) % (2 * period)
    v = (fy + phase) % (2 * period)
    broad = 0.5 * ((u < period * 0.8).astype(np.float32) + (v < period * 0.8).astype(np.float32)) * 0.6
    thin = ((np.abs(u - period * 1.4) < 1.2) | (np.abs(v - period * 1.4) < 1.2)).astype(np.float32)
    return np.maximum(broad, thin)


# --- Logos and text-like prints (family-level decoration away from landmarks) -----------------------


@functools.lru_cache(maxsize=32)
def logo_tile(kind: str, seed: int) -> np.ndarray:
    """A small logo or line of 'text' (float32 coverage, 4 px per figure unit, 40 x 20 units)."""
    rng = np.random.default_rng(seed)
    w, h = 160, 80
    img = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(img)
    if kind == "text":  # rows of letter-like strokes
        rows = int(rng.integers(1, 3))
        for r in range(rows):
            x, y0 = 6.0, 10 + r * 34
            while x < w - 14:
                lw = float(rng.uniform(6, 14))
                shape = int(rng.integers(4))
                if shape == 0:
                    d.rectangle([x, y0, x + lw, y0 + 24], outline=255, width=4)
                elif shape == 1:
                    d.ellipse([x, y0, x + lw, y0 + 24], outline=255, width=4)
                elif shape == 2:
                    d.line([(x, y0 + 24), (x + lw / 2, y0), (x + lw, y0 + 24)], fill=255, width=4)
                else:
                    d.line([(x + lw / 2, y0), (x + lw / 2, y0 + 24)], fill=255, width=4)
                x += lw + float(rng.uniform(4, 8)) + (10 if rng.random() < 0.15 else 0)
    else:  # emblem: a ring or shield with a mark
        d.ellipse([50, 10, 110, 70], outline=255, width=7)
        d.polygon([(66, 52), (80, 20), (94, 52)], fill=255)
    return np.asarray(img, np.float32) / 255.0


def sample_logo(rng: np.random.Generator) -> tuple[str, int] | None:
    u = rng.random()
    if u < 0.2:
        return ("text", int(rng.integers(1 << 30)))
    if u < 0.32:
        return ("emblem", int(rng.integers(1 << 30)))
    return None
