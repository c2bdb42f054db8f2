"""Seeded generator of a synthetic DeepFashion benchmark in the official file layouts.

There is no internet here and the real DeepFashion cannot be shipped, so tests, demos and training
smoke runs use this generator. It writes two datasets that share one set of items:

* ``OUT/inshop/``: the In-shop Clothes Retrieval layout (studio shots, several views per item);
* ``OUT/consumer2shop/``: the Consumer-to-shop layout (studio shots plus cluttered "consumer" photos).

Both use the official file names and formats (count line, header line, records; see
REFERENCE.md). The benchmark is meant to be hard and honest:

* Items come in *families* that share category, colour, body pattern, fabric, cut, photo session
  (model, background) and differ ONLY in local details at the landmark regions: collar trim, cuff
  band, hem band, waistband/belt and a small print near the hem. Global appearance alone cannot
  tell family members apart; a landmark-pooling model can. Family members share a split, so test
  galleries hold their hard negatives.
* Consumer photos have clutter, scale 0.3-1.0, rotation, perspective, truncation by the frame,
  occluders (arms, bags, hair locks), colour casts, blur, noise and JPEG artefacts.

Geometry. Every garment is built as polygons in a 400 x 720 "figure" frame (a standing person,
x right, y down); its landmarks come from the same template geometry (neckline ends, cuff centres,
waist corners, hem corners / leg openings), moved a few units inside the garment the way an
annotator clicks on the cloth. An image is rendered by mapping the figure frame to a canvas with a
similarity transform applied to the polygon vertices and, for consumer photos, warping the canvas
*pixels* with a homography; landmarks go through exactly the same matrices. Coordinates use the
pixel-index convention (integer = pixel centre), as ImageDraw does; :func:`_warp` converts to
PIL's ``transform`` convention. Visibility is decided from the masks that were drawn: a landmark is
occluded (1) when the garment parts drawn over it (side views) or the occluders (consumer photos)
cover its pixel and at least half of a small disc around it; it is truncated (2) when it falls
outside the frame, and its stored coordinate is then clamped to the frame.

Left and right. "Left" is the image's left on every view (DeepFashion's convention). On back views
the garment is seen from behind, i.e. mirrored: the wearer's left sleeve is on the image right. We
build the back view from the same symmetric template (high back neckline, no front print, buttons
or opening) and still assign slots by image side, so ``left_*`` is always the point nearer x = 0.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from tqdm import tqdm

from fashionnet.landmarks import (
    ABSENT,
    CLOTHES_TYPE_SLOTS,
    FULL_BODY,
    LOWER_BODY,
    NUM_LANDMARKS,
    OCCLUDED,
    TRUNCATED,
    UPPER_BODY,
    VISIBLE,
)

GENERATOR_VERSION = 1
MANIFEST_NAME = "SYNTHETIC.json"  # marks a directory this generator owns (safe to overwrite)

# --------------------------------------------------------------------------------------------
# Vocabulary: categories, colours, patterns, attributes, sizes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Category:
    name: str
    clothes_type: int
    group: str  # Consumer-to-shop top folder
    men_share: float  # chance an In-shop family of this category is filed under MEN


# Official order of list_category_cloth.txt (labels are 1-based indices into this tuple).
CATEGORIES: tuple[Category, ...] = (
    Category("Tees", UPPER_BODY, "TOPS", 0.5),
    Category("Tanks", UPPER_BODY, "TOPS", 0.4),
    Category("Long_Sleeve", UPPER_BODY, "TOPS", 0.5),
    Category("Jackets", UPPER_BODY, "TOPS", 0.5),
    Category("Skirts", LOWER_BODY, "BOTTOMS", 0.0),
    Category("Trousers", LOWER_BODY, "BOTTOMS", 0.5),
    Category("Shorts", LOWER_BODY, "BOTTOMS", 0.5),
    Category("Dresses", FULL_BODY, "DRESSES", 0.0),
    Category("Jumpsuits", FULL_BODY, "DRESSES", 0.0),
)
CATEGORY_BY_NAME = {c.name: c for c in CATEGORIES}
# Families cycle through categories in this order so even tiny sets hold all three clothes types.
_FAMILY_CATEGORY_CYCLE = ("Tees", "Skirts", "Dresses", "Trousers", "Jackets", "Jumpsuits", "Long_Sleeve", "Shorts", "Tanks")

# Garment colours. No near-white colour: garments must stand out from the light studio background.
COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (32, 32, 36),
    "grey": (128, 128, 132),
    "beige": (200, 178, 140),
    "brown": (115, 74, 42),
    "red": (190, 32, 42),
    "pink": (232, 132, 168),
    "orange": (232, 118, 30),
    "yellow": (232, 196, 42),
    "green": (38, 128, 62),
    "blue": (48, 98, 200),
    "navy": (26, 36, 84),
    "purple": (108, 50, 140),
}
PATTERNS = ("solid", "stripes", "checks", "dots", "motif")
PRINT_SHAPES = ("star", "heart", "circle")
SKIN_TONES = ((236, 200, 170), (214, 168, 130), (170, 118, 82), (112, 74, 52))
HAIR_COLOURS = ((28, 22, 20), (80, 52, 32), (150, 110, 60), (214, 184, 120))
COMPANION_COLOURS = ((44, 44, 50), (64, 80, 118), (186, 172, 140), (226, 226, 220), (118, 118, 124))

# Attribute types of list_attr_cloth.txt.
ATTRIBUTE_TYPES = {1: "texture", 2: "fabric", 3: "shape", 4: "part", 5: "style"}
_PATTERN_ATTRIBUTE = {"solid": "solid", "stripes": "striped", "checks": "checked", "dots": "dotted", "motif": "motif print"}
# (name, type). Multi-word names contain spaces, as real DeepFashion names do.
ATTRIBUTES: tuple[tuple[str, int], ...] = (
    *((name, 1) for name in COLOURS),
    *((_PATTERN_ATTRIBUTE[p], 1) for p in PATTERNS),
    ("denim", 2),
    ("knit", 2),
    ("sleeveless", 3),
    ("short sleeve", 3),
    ("long sleeve", 3),
    ("v neck", 3),
    ("round neck", 3),
    ("long length", 3),
    ("short length", 3),
    ("flared", 3),
    ("collar trim", 4),
    ("contrast cuffs", 4),
    ("hem band", 4),
    ("contrast waistband", 4),
    ("hem print", 4),
    ("star print", 4),
    ("heart print", 4),
    ("circle print", 4),
    ("buttons", 4),
    ("sporty trim", 5),
)
ATTRIBUTE_NAMES = tuple(a for a, _ in ATTRIBUTES)
# The attributes family members may differ in (everything else is shared by a family).
DETAIL_ATTRIBUTES = (
    "collar trim",
    "contrast cuffs",
    "hem band",
    "contrast waistband",
    "hem print",
    "star print",
    "heart print",
    "circle print",
    "sporty trim",
)


@dataclass(frozen=True)
class SizeSpec:
    """How much to generate. Counts are per item, drawn uniformly in the inclusive ranges."""

    families: int
    family_size: int
    inshop_views: tuple[int, int]  # studio views per item in In-shop (front is always one)
    shop_images: tuple[int, int]  # studio images per item in Consumer-to-shop
    consumer_images: tuple[int, int]  # consumer photos per item in Consumer-to-shop


SIZES: dict[str, SizeSpec] = {
    # 24 items, about 130 images: every clothes type, every split; a few seconds.
    "tiny": SizeSpec(families=6, family_size=4, inshop_views=(2, 4), shop_images=(1, 1), consumer_images=(1, 2)),
    "small": SizeSpec(families=30, family_size=4, inshop_views=(3, 5), shop_images=(1, 2), consumer_images=(1, 3)),
    # 500 items, about 4,000 images; under two minutes on two cores.
    "default": SizeSpec(families=125, family_size=4, inshop_views=(3, 5), shop_images=(1, 2), consumer_images=(1, 3)),
}

# In-shop views: name -> pose_type code (also the V in NN_V_view.jpg).
VIEW_CODES = {"front": 1, "side": 2, "back": 3, "full": 4, "additional": 5}
SHOP_SIZE = 256  # In-shop images are 256 x 256
CONSUMER_SIDE_RANGE = (200, 360)

# --------------------------------------------------------------------------------------------
# Items: families of garments that differ only in local details
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    """A contrasting band at a landmark region; ``stripe`` is the sporty inner stripe colour."""

    colour: tuple[int, int, int]
    width: float  # figure units
    stripe: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class Details:
    """Local details at the landmark regions: the only thing family members differ in."""

    collar: Band | None = None
    cuffs: Band | None = None
    hem: Band | None = None
    waist: Band | None = None
    print_shape: str | None = None
    print_colour: tuple[int, int, int] = (0, 0, 0)
    print_size: float = 18.0


@dataclass(frozen=True)
class Look:
    """Photo session: the studio model and background (shared by a family's studio shots)."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    long_hair: bool
    companion: tuple[int, int, int]  # the other garment the model wears
    background: tuple[int, int, int]


@dataclass(frozen=True)
class Style:
    """Everything a family shares: category, colours, pattern, fabric and cut."""

    category: str
    clothes_type: int
    gender: str  # MEN / WOMEN (In-shop folder)
    colour: str
    pattern: str
    pattern_colour: str
    pattern_period: float
    pattern_phase: float
    fabric: str | None  # denim / knit / None
    sleeve: str  # none / short / long / n/a (lower-body)
    neck: str  # round / v / n/a
    buttons: bool
    dims: dict = field(default_factory=dict)  # template dimensions in figure units


@dataclass(frozen=True)
class ItemSpec:
    index: int  # 0-based
    item_id: str  # id_00000001
    family: int
    style: Style
    details: Details
    look: Look
    split_c2s: str  # train / val / test
    split_inshop: str  # train / test (test images are split into query and gallery)

    @property
    def category(self) -> Category:
        return CATEGORY_BY_NAME[self.style.category]


def _dist(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, float) - np.asarray(b, float)))


def _pick_colour(rng: np.random.Generator, avoid, min_dist: float = 90.0) -> tuple[int, int, int]:
    """A palette colour at least ``min_dist`` away from every colour in ``avoid`` (or the farthest)."""
    names = list(COLOURS)
    order = rng.permutation(len(names))
    for i in order:
        c = COLOURS[names[i]]
        if all(_dist(c, a) >= min_dist for a in avoid):
            return c
    return max((COLOURS[n] for n in names), key=lambda c: min(_dist(c, a) for a in avoid))


def _sample_style(rng: np.random.Generator, category: Category) -> Style:
    u = rng.uniform
    name, ct = category.name, category.clothes_type
    gender = "MEN" if rng.random() < category.men_share else "WOMEN"
    colour = str(rng.choice(list(COLOURS)))
    pattern = str(rng.choice(PATTERNS, p=[0.3, 0.2, 0.15, 0.15, 0.2]))
    pattern_colour = next(n for n in rng.permutation(list(COLOURS)) if _dist(COLOURS[n], COLOURS[colour]) >= 80)
    fabric = None
    if name in ("Trousers", "Shorts", "Skirts", "Jackets") and rng.random() < 0.3:
        fabric = "denim"
    elif name in ("Tees", "Long_Sleeve", "Tanks", "Dresses") and rng.random() < 0.25:
        fabric = "knit"
    men = gender == "MEN"
    d: dict[str, float] = {}
    sleeve, neck = "n/a", "n/a"
    if ct in (UPPER_BODY, FULL_BODY):
        if name in ("Tanks",) or (ct == FULL_BODY and rng.random() < 0.55):
            sleeve = "none"
        elif name in ("Long_Sleeve", "Jackets"):
            sleeve = "long"
        else:
            sleeve = "short"
        neck = "v" if name == "Jackets" or (name != "Tanks" and rng.random() < 0.35) else "round"
        d["neck_half"] = u(27, 34) if sleeve == "none" else u(21, 27)
        if neck == "v":
            d["neck_depth"] = u(42, 62)
        else:
            d["neck_depth"] = u(26, 40) if sleeve == "none" else u(12, 20)
        d["chest_half"] = u(56, 63) if men else u(51, 57)
        d["shoulder_half"] = d["neck_half"] + u(9, 13) if sleeve == "none" else (u(66, 73) if men else u(60, 67))
        d["armhole_depth"] = u(62, 72) if sleeve == "none" else 50.0
        d["sleeve_len"] = {"short": u(48, 66), "long": u(178, 198)}.get(sleeve, 0.0)
        d["cuff_half"] = {"short": u(19, 24), "long": u(14, 18) if name == "Jackets" else u(12, 15)}.get(sleeve, 0.0)
    if ct == UPPER_BODY:
        d["hem_half"] = d["chest_half"] + (u(4, 12) if name == "Jackets" else u(-2, 7))
        d["hem_y"] = {"Tees": u(330, 352), "Tanks": u(322, 345), "Long_Sleeve": u(336, 360), "Jackets": u(362, 405)}[name]
    elif ct == LOWER_BODY:
        d["waist_y"] = 300.0
        d["waist_half"] = u(45, 54)
        if name == "Skirts":
            d["length"] = u(120, 270)
            d["flare"] = u(8, 60)
        else:
            d["drop"] = u(72, 86) if name == "Trousers" else u(66, 78)
            d["leg_len"] = u(300, 328) if name == "Trousers" else u(60, 100)
            d["open_half"] = u(19, 25) if name == "Trousers" else u(29, 36)
    else:
        d["waist_half"] = u(44, 52) if name == "Dresses" else u(48, 56)
        if name == "Dresses":
            d["waist_y"] = u(268, 288)
            d["length"] = u(150, 330)
            d["flare"] = u(15, 75)
        else:
            d["waist_y"] = 300.0
            d["drop"] = u(70, 84)
            d["leg_len"] = u(288, 318) if rng.random() < 0.75 else u(70, 100)
            d["open_half"] = u(19, 25) if d["leg_len"] > 200 else u(29, 36)
    buttons_p = {"Jackets": 0.6, "Long_Sleeve": 0.2, "Dresses": 0.2, "Jumpsuits": 0.3}.get(name, 0.0)
    return Style(
        category=name,
        clothes_type=ct,
        gender=gender,
        colour=colour,
        pattern=pattern,
        pattern_colour=pattern_colour,
        pattern_period=float(u(14, 26) if pattern in ("stripes", "checks") else u(18, 26) if pattern == "dots" else u(30, 40)),
        pattern_phase=float(u(0, 100)),
        fabric=fabric,
        sleeve=sleeve,
        neck=neck,
        buttons=bool(rng.random() < buttons_p),
        dims={k: float(v) for k, v in d.items()},
    )


def _detail_slots(style: Style) -> tuple[str, ...]:
    """Which detail bands exist for a garment: collar/cuffs on tops, waist on bottoms and dresses."""
    slots = []
    if style.clothes_type in (UPPER_BODY, FULL_BODY):
        slots += ["collar", "cuffs"]
    if style.clothes_type in (LOWER_BODY, FULL_BODY):
        slots += ["waist"]
    slots += ["hem"]
    return tuple(slots)


# Tall garments are shrunk more to fit a square photo; larger details keep them several pixels wide
# at the model's 224-px input (about 5-10 px for bands, 12+ px for prints on front views).
_DETAIL_SCALE = {"Trousers": 1.45, "Dresses": 1.45, "Jumpsuits": 1.6}


def _sample_details(rng: np.random.Generator, style: Style) -> Details:
    avoid = [COLOURS[style.colour], COLOURS[style.pattern_colour]]
    scale = _DETAIL_SCALE.get(style.category, 1.0)
    bands: dict[str, Band | None] = {}
    sporty = rng.random() < 0.3
    for slot in _detail_slots(style):
        if rng.random() < 0.55:
            colour = _pick_colour(rng, avoid)
            stripe = _pick_colour(rng, avoid + [colour], 70) if sporty else None
            bands[slot] = Band(colour, float(rng.uniform(10, 16) * scale), stripe)
        else:
            bands[slot] = None
    shape = rng.choice([None, *PRINT_SHAPES], p=[0.4, 0.2, 0.2, 0.2])
    return Details(
        **bands,
        print_shape=None if shape is None else str(shape),
        print_colour=_pick_colour(rng, avoid),
        print_size=float(rng.uniform(17, 23) * scale),
    )


def _sample_look(rng: np.random.Generator, gender: str) -> Look:
    tint = rng.integers(-6, 7, 3)
    grey = int(rng.integers(230, 247))
    return Look(
        skin=SKIN_TONES[int(rng.integers(len(SKIN_TONES)))],
        hair=HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))],
        long_hair=bool(gender == "WOMEN" and rng.random() < 0.7),
        companion=COMPANION_COLOURS[int(rng.integers(len(COMPANION_COLOURS)))],
        background=tuple(int(np.clip(grey + t, 0, 255)) for t in tint),
    )


def make_items(size: str | SizeSpec = "default", seed: int = 0) -> list[ItemSpec]:
    """The item list of a benchmark: families of ``family_size`` items, splits assigned per family.

    Splits (by family, so family members always share one): Consumer-to-shop train / val / test
    about 50 / 25 / 25 %; In-shop train = Consumer-to-shop train, In-shop test = val + test, so a
    model trained on either benchmark never sees the other's evaluation items.
    """
    spec = SIZES[size] if isinstance(size, str) else size
    if spec.families < 4:
        raise ValueError(f"need at least 4 families to fill every split, got {spec.families}")
    families = []
    for f in range(spec.families):
        rng = np.random.default_rng([seed, 1, f])
        category = CATEGORY_BY_NAME[_FAMILY_CATEGORY_CYCLE[f % len(_FAMILY_CATEGORY_CYCLE)]]
        families.append((_sample_style(rng, category), rng))
    # Spread every category over the splits: order families by category, then deal a 4-cycle.
    split_rng = np.random.default_rng([seed, 2])
    order = sorted(range(spec.families), key=lambda f: (_FAMILY_CATEGORY_CYCLE.index(families[f][0].category), split_rng.random()))
    cycle = ("train", "test", "train", "val")
    split_of = {f: cycle[i % 4] for i, f in enumerate(order)}
    items: list[ItemSpec] = []
    for f, (style, rng) in enumerate(families):
        look = _sample_look(rng, style.gender)
        seen: list[tuple[int, ...]] = []
        for _ in range(spec.family_size):
            # Members must differ in at least one detail attribute.
            for _ in range(200):
                details = _sample_details(rng, style)
                signature = _detail_signature(style, details)
                if signature not in seen:
                    break
            else:
                raise RuntimeError(f"could not find {spec.family_size} distinct detail sets for family {f}")
            seen.append(signature)
            index = len(items)
            items.append(
                ItemSpec(
                    index=index,
                    item_id=f"id_{index + 1:08d}",
                    family=f,
                    style=style,
                    details=details,
                    look=look,
                    split_c2s=split_of[f],
                    split_inshop="train" if split_of[f] == "train" else "test",
                )
            )
    return items


def item_attributes(item: ItemSpec) -> np.ndarray:
    """The item's attribute labels (int8, 1 present / -1 absent) in :data:`ATTRIBUTES` order."""
    s, d = item.style, item.details
    present = {s.colour, _PATTERN_ATTRIBUTE[s.pattern]}
    if s.fabric:
        present.add(s.fabric)
    present |= {"none": {"sleeveless"}, "short": {"short sleeve"}, "long": {"long sleeve"}}.get(s.sleeve, set())
    present |= {"v": {"v neck"}, "round": {"round neck"}}.get(s.neck, set())
    dims = s.dims
    if s.category in ("Trousers",) or (s.category == "Jumpsuits" and dims["leg_len"] > 200):
        present.add("long length")
    if s.category in ("Shorts",) or (s.category == "Jumpsuits" and dims["leg_len"] <= 200):
        present.add("short length")
    if s.category in ("Skirts", "Dresses"):
        long_cut = dims["length"] > (200 if s.category == "Skirts" else 240)
        short_cut = dims["length"] < (160 if s.category == "Skirts" else 200)
        present |= {"long length"} if long_cut else {"short length"} if short_cut else set()
        if dims["flare"] > 35:
            present.add("flared")
    if s.buttons:
        present.add("buttons")
    present |= _detail_attribute_set(s, d)
    return np.array([1 if name in present else -1 for name in ATTRIBUTE_NAMES], dtype=np.int8)


def _detail_attribute_set(style: Style, d: Details) -> set[str]:
    present = set()
    if d.collar:
        present.add("collar trim")
    if d.cuffs:
        present.add("contrast cuffs")
    if d.hem:
        present.add("hem band")
    if d.waist:
        present.add("contrast waistband")
    if d.print_shape:
        present |= {"hem print", f"{d.print_shape} print"}
    if any(b is not None and b.stripe is not None for b in (d.collar, d.cuffs, d.hem, d.waist)):
        present.add("sporty trim")
    return present


def _detail_signature(style: Style, d: Details) -> tuple[int, ...]:
    present = _detail_attribute_set(style, d)
    return tuple(int(a in present) for a in DETAIL_ATTRIBUTES)


def describe_item(item: ItemSpec) -> list[str]:
    """Shop-style description sentences (for list_description_inshop.json)."""
    s, d = item.style, item.details
    noun = {
        "Tees": "tee",
        "Tanks": "tank top",
        "Long_Sleeve": "long-sleeve top",
        "Jackets": "jacket",
        "Skirts": "skirt",
        "Trousers": "pair of trousers",
        "Shorts": "pair of shorts",
        "Dresses": "dress",
        "Jumpsuits": "jumpsuit",
    }[s.category]
    pattern = {"solid": "plain", "stripes": "striped", "checks": "checked", "dots": "polka-dot", "motif": "floral-print"}[s.pattern]
    lines = [f"A {pattern} {s.colour} {noun}" + (f" in {s.fabric}" if s.fabric else "") + "."]
    for label, band in (("collar trim", d.collar), ("cuffs", d.cuffs), ("hem band", d.hem), ("waistband", d.waist)):
        if band is not None:
            lines.append(f"Contrast {label}" + (" with a sporty stripe." if band.stripe else "."))
    if d.print_shape:
        lines.append(f"Small {d.print_shape} print near the hem.")
    if s.buttons:
        lines.append("Button front.")
    return lines


# --------------------------------------------------------------------------------------------
# Garment geometry in the figure frame
# --------------------------------------------------------------------------------------------

FIG_W, FIG_H = 400, 720
CX = 200.0
SHOULDER_Y = 128.0
LANDMARK_INSET = 5.0  # landmarks sit this far inside the garment edge (figure units)


@dataclass(frozen=True)
class Pose:
    """Per-image pose of model and garment (non-rigid: limb angles, hem sway, flare)."""

    view: str  # front / back / side
    near: int = 1  # side view: +1 the model faces image right (right limbs in front), -1 left
    compress: float = 1.0  # side view: horizontal foreshortening of the body
    arms: tuple[float, float] = (15.0, 15.0)  # degrees from vertical, image-left then image-right
    legs: tuple[float, float] = (3.0, 3.0)
    sway: float = 0.0  # horizontal shift of skirt hems
    flare: float = 0.0  # extra skirt flare


@dataclass
class _BandShape:
    owner: str
    band: Band
    polygon: np.ndarray | None = None  # (N, 2) figure coords
    line: np.ndarray | None = None  # polyline (N, 2) drawn ``band.width`` wide
    stripe: np.ndarray | None = None  # polyline of the sporty stripe, in the band's inner part


@dataclass
class Garment:
    """A garment posed in the figure frame: parts (back to front), landmarks and details."""

    parts: list[tuple[str, np.ndarray, float]]  # (name, polygon, brightness factor), drawing order
    landmarks: np.ndarray  # (8, 2); NaN for slots this clothes type lacks
    owners: list[str | None]  # part each landmark lies on
    bands: list[_BandShape]
    prints: list[tuple[str, np.ndarray, float, tuple[int, int, int]]]  # (shape, centre, size, colour)
    buttons: list[np.ndarray]
    seams: list[tuple[str, np.ndarray, float]]  # (owner, polyline, width) darker lines: jacket opening
    lapels: list[np.ndarray]
    print_part: str = "body"  # part the hem print is on

    def bbox(self) -> tuple[float, float, float, float]:
        pts = np.concatenate([p for _, p, _ in self.parts])
        return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def _arr(*pts) -> np.ndarray:
    return np.array(pts, dtype=np.float64)


def _neckline(nh: float, depth: float, v: bool, n: int = 9) -> np.ndarray:
    t = np.linspace(-1.0, 1.0, n)
    dip = (1.0 - np.abs(t)) if v else (1.0 - t**2)
    return np.stack([CX + nh * t, SHOULDER_Y + depth * dip], axis=1)


def _limb(top_outer, top_inner, side: int, angle_deg: float, length: float, end_half: float):
    """A sleeve or trouser leg hanging from an attachment edge: (polygon, end centre, axis, outer end, inner end)."""
    a = math.radians(angle_deg)
    axis = np.array([side * math.sin(a), math.cos(a)])
    outward = np.array([side * math.cos(a), -math.sin(a)])  # perpendicular, pointing away from the body
    root = (np.asarray(top_outer) + np.asarray(top_inner)) / 2.0
    end = root + axis * length
    end_outer, end_inner = end + outward * end_half, end - outward * end_half
    polygon = np.stack([top_outer, end_outer, end_inner, top_inner])
    return polygon, end, axis, end_outer, end_inner


def _edge_band(owner: str, band: Band, p_outer, p_inner, axis) -> _BandShape:
    """Band along an end edge (cuff, leg opening), reaching ``band.width`` up the limb."""
    ext = (p_outer - p_inner) * 0.08
    w = band.width
    polygon = np.stack([p_outer + ext + axis * 3, p_inner - ext + axis * 3, p_inner - ext - axis * w, p_outer + ext - axis * w])
    return _BandShape(owner, band, polygon=polygon, stripe=np.stack([p_outer + ext, p_inner - ext]) - axis * 0.72 * w)


def _straight_band(owner: str, band: Band, left, right, inward: float, outside: float, pad: float) -> _BandShape:
    """Band along a horizontal edge from ``left`` to ``right``; ``inward`` = +1 down, -1 up."""
    w = band.width
    polygon = np.stack(
        [left + (-pad, -inward * outside), right + (pad, -inward * outside), right + (pad, inward * w), left + (-pad, inward * w)]
    )
    return _BandShape(owner, band, polygon=polygon, stripe=np.stack([left + (-pad, inward * 0.72 * w), right + (pad, inward * 0.72 * w)]))


def build_garment(item: ItemSpec, pose: Pose) -> Garment:
    """Pose the item's template in the figure frame; landmarks come from the same geometry."""
    s, d, dims = item.style, item.details, item.style.dims
    back = pose.view == "back"
    lm = np.full((NUM_LANDMARKS, 2), np.nan)
    owners: list[str | None] = [None] * NUM_LANDMARKS
    parts: list[tuple[str, np.ndarray, float]] = []
    bands: list[_BandShape] = []
    prints, buttons, seams, lapels = [], [], [], []
    inset = LANDMARK_INSET
    ct = s.clothes_type
    print_part = "body"
    body: list[np.ndarray] = []  # outline of the main body part, built top to bottom
    limbs: list[tuple[str, np.ndarray]] = []

    if ct in (UPPER_BODY, FULL_BODY):
        nh, sh, ch = dims["neck_half"], dims["shoulder_half"], dims["chest_half"]
        depth = 8.0 if back else dims["neck_depth"]
        neck = _neckline(nh, depth, s.neck == "v" and not back)
        sleeveless = s.sleeve == "none"
        sy = SHOULDER_Y + (4.0 if sleeveless else 8.0)
        armpit_y = SHOULDER_Y + dims["armhole_depth"]
        shoulder = {side: _arr(CX + side * sh, sy) for side in (-1, 1)}
        armpit = {side: _arr(CX + side * ch, armpit_y) for side in (-1, 1)}
        # Left half of the outline is appended later in reverse; keep the right-hand path here.
        right_path = [neck[-1], shoulder[1]]
        if sleeveless:  # deep armhole from strap to armpit, hugging the strap first
            t = np.linspace(0.0, 1.0, 7)[1:-1]
            curve = {
                side: np.stack([shoulder[side][0] + (armpit[side][0] - shoulder[side][0]) * t**2, sy + (armpit_y - sy) * t], 1)
                for side in (-1, 1)
            }
            right_path += list(curve[1])
        right_path.append(armpit[1])
        for side, slot_c, slot_s in ((-1, 0, 2), (1, 1, 3)):
            lm[slot_c] = (CX + side * (nh + 3.0), SHOULDER_Y + inset)
            owners[slot_c] = "body"
            if sleeveless:
                lm[slot_s] = armpit[side] + (-side * inset, -2.0)
                owners[slot_s] = "body"
                if d.cuffs:  # armhole binding plays the cuff's part on sleeveless tops
                    path = np.concatenate([[shoulder[side]], curve[side], [armpit[side]]])
                    w = d.cuffs.width
                    bands.append(_BandShape("body", d.cuffs, line=path + (-side * w / 2, 0), stripe=path + (-side * 0.72 * w, 0)))
            else:
                angle = pose.arms[0 if side < 0 else 1]
                poly, end, axis, e_out, e_in = _limb(shoulder[side], armpit[side], side, angle, dims["sleeve_len"], dims["cuff_half"])
                name = "sleeve_l" if side < 0 else "sleeve_r"
                limbs.append((name, poly))
                lm[slot_s] = end - axis * inset
                owners[slot_s] = name
                if d.cuffs:
                    bands.append(_edge_band(name, d.cuffs, e_out, e_in, axis))
        if d.collar:
            w = d.collar.width
            ext_l = neck[0] + (-9.0, 1.5)
            ext_r = neck[-1] + (9.0, 1.5)
            path = np.concatenate([[ext_l], neck, [ext_r]])
            bands.append(_BandShape("body", d.collar, line=path + (0, w / 2.0), stripe=path + (0, 0.72 * w)))
        if s.category == "Jackets" and not back:
            bottom = _arr(CX, SHOULDER_Y + depth)
            for side in (-1, 1):
                neck_end = neck[0 if side < 0 else -1]
                tip = _arr(CX + side * (nh + 16), SHOULDER_Y + depth * 0.5)
                lapels.append(np.stack([neck_end + (side * 1.0, 0), bottom + (side * 2.0, -3.0), tip]))
        top_outline = [*neck]
        mid_right = right_path
    if ct == UPPER_BODY:
        hh, hy = dims["hem_half"], dims["hem_y"]
        hem_l, hem_r = _arr(CX - hh, hy), _arr(CX + hh, hy)
        outline = top_outline + mid_right[1:] + [hem_r, hem_l] + [p * (-1, 1) + (2 * CX, 0) for p in reversed(mid_right[1:])]
        body = outline
        lm[6], lm[7] = hem_l + (inset, -inset), hem_r + (-inset, -inset)
        owners[6] = owners[7] = "body"
        if d.hem:
            bands.append(_straight_band("body", d.hem, hem_l, hem_r, inward=-1, outside=4, pad=6))
        print_at = hem_l + (26.0, -(d.hem.width if d.hem else 0.0) - 20.0)
        opening = (SHOULDER_Y + dims["neck_depth"], hy)
    elif ct == LOWER_BODY or (ct == FULL_BODY):
        wy, wh = dims["waist_y"], dims["waist_half"]
        waist_l, waist_r = _arr(CX - wh, wy), _arr(CX + wh, wy)
        if ct == LOWER_BODY:
            top_outline = [waist_l]
            mid_right = [waist_l, waist_r]
            lm[4], lm[5] = waist_l + (inset, inset), waist_r + (-inset, inset)
            if d.waist:
                bands.append(_straight_band("body", d.waist, waist_l, waist_r, inward=1, outside=4, pad=6))
        else:
            lm[4], lm[5] = waist_l + (inset, 0.0), waist_r + (-inset, 0.0)
            if d.waist:  # a belt across the waistline
                w = d.waist.width
                belt = np.stack([waist_l + (-8, -w / 2), waist_r + (8, -w / 2), waist_r + (8, w / 2), waist_l + (-8, w / 2)])
                # The stripe runs below the belt's centre line, clear of the waist landmarks on it.
                bands.append(_BandShape("body", d.waist, polygon=belt, stripe=np.stack([waist_l + (-8, 0.3 * w), waist_r + (8, 0.3 * w)])))
            mid_right = mid_right + [waist_r]
        owners[4] = owners[5] = "body"
        if s.category in ("Skirts", "Dresses"):
            length, flare = dims["length"], max(2.0, dims["flare"] + pose.flare)
            hy = wy + length
            hem_l = _arr(CX - wh - flare + pose.sway, hy)
            hem_r = _arr(CX + wh + flare + pose.sway, hy)
            hip_r = _arr(CX + wh + 6 + flare * 0.25 + pose.sway * 0.3, wy + min(55.0, length * 0.35))
            t = np.linspace(0, 1, 7)[1:-1]
            hem_curve = [hem_r + (hem_l - hem_r) * ti + (0, 6.0 * math.sin(math.pi * ti)) for ti in t]
            hip_l = hip_r * (-1, 1) + (2 * CX + 2 * pose.sway * 0.3, 0)
            right = mid_right[1:] + [hip_r, hem_r] + hem_curve + [hem_l, hip_l]
            left_back = [p * (-1, 1) + (2 * CX, 0) for p in reversed(mid_right[1:])]
            body = top_outline + right + left_back
            lm[6], lm[7] = hem_l + (inset + 1, -inset), hem_r + (-inset - 1, -inset)
            owners[6] = owners[7] = "body"
            if d.hem:
                bands.append(_straight_band("body", d.hem, hem_l, hem_r, inward=-1, outside=12, pad=8))
            print_at = hem_l + (30.0 + flare * 0.15, -(d.hem.width if d.hem else 0.0) - 22.0)
        else:  # trousers, shorts, jumpsuits: a seat and two legs
            drop = dims["drop"]
            crotch = _arr(CX, wy + drop)
            hip = {side: _arr(CX + side * (wh + 4), wy + drop * 0.6) for side in (-1, 1)}
            right = mid_right[1:] + [hip[1], crotch, hip[-1]]
            left_back = [p * (-1, 1) + (2 * CX, 0) for p in reversed(mid_right[1:])]
            body = top_outline + right + left_back
            for side, slot in ((-1, 6), (1, 7)):
                angle = pose.legs[0 if side < 0 else 1]
                top_inner = crotch + (side * 1.0, 0)
                poly, end, axis, e_out, e_in = _limb(hip[side], top_inner, side, angle, dims["leg_len"] + drop * 0.2, dims["open_half"])
                name = "leg_l" if side < 0 else "leg_r"
                limbs.append((name, poly))
                lm[slot] = end - axis * inset
                owners[slot] = name
                if d.hem:
                    bands.append(_edge_band(name, d.hem, e_out, e_in, axis))
                if side < 0:
                    print_part = name
                    print_at = end - axis * ((d.hem.width if d.hem else 0.0) + 20.0)
        opening = (SHOULDER_Y + dims.get("neck_depth", 0.0), dims["waist_y"] + dims.get("length", dims.get("drop", 0.0)))
    parts.append(("body", np.array(body), 1.0))

    if not back:
        if d.print_shape:
            prints.append((d.print_shape, np.asarray(print_at), d.print_size, d.print_colour))
        if s.category == "Jackets":
            seams.append(("body", _arr((CX, opening[0]), (CX, opening[1] - 1)), 2.5))
        if s.buttons and ct != LOWER_BODY:
            top, bottom = opening[0] + 14, min(opening[1] - 20, opening[0] + 150)
            n = max(3, int((bottom - top) // 32) + 1)
            buttons = [_arr(CX - (5.0 if s.category == "Jackets" else 0.0), y) for y in np.linspace(top, bottom, n)]
    # Limbs in front of the body on front/back views; a side view puts the far limb behind.
    for name, poly in limbs:
        parts.append((name, poly, 0.94))
    garment = Garment(parts, lm, owners, bands, prints, buttons, seams, lapels, print_part)
    if pose.view == "side":
        garment = _to_side_view(garment, pose)
    return garment


def _to_side_view(g: Garment, pose: Pose) -> Garment:
    """Foreshorten the garment horizontally and move the far limbs behind the body."""
    c, near = pose.compress, pose.near

    def squeeze(p):
        p = np.array(p, dtype=np.float64)
        p[..., 0] = CX + (p[..., 0] - CX) * c
        return p

    far_names, near_names, shift = [], [], {}
    for name, poly, _ in g.parts:
        if name == "body":
            continue
        side = -1 if name.endswith("_l") else 1
        # The far limb slides in behind the torso, the near one towards the body's side line.
        if side == near:
            near_names.append(name)
            shift[name] = -near * 0.35 * abs(float(poly[:, 0].mean()) - CX) * c
        else:
            far_names.append(name)
            shift[name] = near * 0.75 * abs(float(poly[:, 0].mean()) - CX) * c

    def move(name, p):
        p = squeeze(p)
        if name in shift:
            p = p + (shift[name], 0.0)
        return p

    order = [n for n in far_names] + ["body"] + [n for n in near_names]
    by_name = {n: (p, b) for n, p, b in g.parts}
    parts = [(n, move(n, by_name[n][0]), by_name[n][1] * (0.85 if n in far_names else 1.0)) for n in order]
    lm = g.landmarks.copy()
    for j in range(NUM_LANDMARKS):
        if g.owners[j] is not None:
            lm[j] = move(g.owners[j], lm[j])
    bands = [
        _BandShape(b.owner, b.band, *(None if v is None else move(b.owner, v) for v in (b.polygon, b.line, b.stripe)))
        for b in g.bands
    ]
    prints = [(shape, move(g.print_part, centre), size * c, col) for shape, centre, size, col in g.prints]
    out = Garment(
        parts,
        lm,
        list(g.owners),
        bands,
        prints,
        [squeeze(b) for b in g.buttons],
        [(o, squeeze(p), w) for o, p, w in g.seams],
        [squeeze(p) for p in g.lapels],
        g.print_part,
    )
    _assign_slots_by_image_side(out)
    return out


def _assign_slots_by_image_side(g: Garment) -> None:
    """Keep 'left' = image left after foreshortening: swap an L/R pair whose order flipped."""
    for a, b in ((0, 1), (2, 3), (4, 5), (6, 7)):
        if not np.isnan(g.landmarks[a, 0]) and g.landmarks[a, 0] > g.landmarks[b, 0]:
            g.landmarks[[a, b]] = g.landmarks[[b, a]]
            g.owners[a], g.owners[b] = g.owners[b], g.owners[a]


def sample_pose(rng: np.random.Generator, item: ItemSpec, view: str) -> Pose:
    """A random model pose for one photo (limb angles, hem sway, side-view foreshortening)."""
    s = item.style
    if s.sleeve == "short":
        arms = rng.uniform(22, 48, 2)
    elif s.sleeve == "long":
        arms = rng.uniform(6, 26, 2)
    else:
        arms = rng.uniform(8, 20, 2)
    legs = rng.uniform(0, 8, 2) if s.category != "Shorts" else rng.uniform(0, 5, 2)
    return Pose(
        view=view,
        near=int(rng.choice([-1, 1])),
        compress=float(rng.uniform(0.55, 0.7)),
        arms=(float(arms[0]), float(arms[1])),
        legs=(float(legs[0]), float(legs[1])),
        sway=float(rng.uniform(-8, 8)),
        flare=float(rng.uniform(-6, 6)),
    )


# --------------------------------------------------------------------------------------------
# Raster rendering: figure frame -> canvas (similarity on vertices) -> frame (homography on pixels)
# --------------------------------------------------------------------------------------------


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


@dataclass
class _Layers:
    rgb: np.ndarray  # (h, w, 3) float32 premultiplied colour
    alpha: np.ndarray  # (h, w) float32 coverage
    garment: np.ndarray  # (h, w) float32 garment coverage
    landmarks: np.ndarray  # (8, 2) canvas coordinates, NaN absent
    self_occluded: np.ndarray  # (8,) bool: covered by a garment part drawn over it


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


def _mannequin(draw: ImageDraw.ImageDraw, m: np.ndarray, item: ItemSpec, pose: Pose, look: Look) -> None:
    """Draw the model wearing the item (behind the garment): legs, arms, companion garment, head."""
    s, tx, ty = float(m[0, 0]), float(m[0, 2]), float(m[1, 2])  # m is a similarity without rotation
    c = pose.compress if pose.view == "side" else 1.0

    def p(x, y):
        return ((CX + (x - CX) * c) * s + tx, y * s + ty)

    skin, ct = look.skin, item.style.clothes_type
    shoulder_half = item.style.dims.get("shoulder_half", 62.0)
    shoulder_half = max(shoulder_half, 58.0) if item.style.sleeve != "none" else 60.0
    # Legs and shoes.
    for side, angle in ((-1, pose.legs[0]), (1, pose.legs[1])):
        a = math.radians(angle)
        hip = (CX + side * 26, 372)
        ankle = (hip[0] + side * math.sin(a) * 320, hip[1] + math.cos(a) * 320)
        _capsule(draw, p(*hip), p(*ankle), 40 * s * c, skin)
        foot = p(ankle[0] + side * 6, ankle[1] + 8)
        draw.ellipse([foot[0] - 18 * s, foot[1] - 8 * s, foot[0] + 18 * s, foot[1] + 8 * s], fill=(40, 34, 32))
    # Arms: from the shoulders along the sleeve angles, hands beyond the cuffs.
    for side, angle in ((-1, pose.arms[0]), (1, pose.arms[1])):
        a = math.radians(angle)
        top = (CX + side * (shoulder_half - 8), SHOULDER_Y + 22)
        hand = (top[0] + side * math.sin(a) * 285, top[1] + math.cos(a) * 285)
        _capsule(draw, p(*top), p(*hand), 30 * s * c, skin)
        h = p(*hand)
        draw.ellipse([h[0] - 15 * s, h[1] - 18 * s, h[0] + 15 * s, h[1] + 18 * s], fill=skin)
    torso = [p(CX - 58, SHOULDER_Y + 4), p(CX + 58, SHOULDER_Y + 4), p(CX + 52, 300), p(CX + 60, 380), p(CX - 60, 380), p(CX - 52, 300)]
    draw.polygon(torso, fill=skin)
    if ct == UPPER_BODY:  # trousers under a top
        outline = [(-58, 320), (58, 320), (70, 700), (8, 700), (0, 420), (-8, 700), (-70, 700)]
        draw.polygon([p(CX + x, y) for x, y in outline], fill=look.companion)
    elif ct == LOWER_BODY:  # a plain top over bottoms
        half = [(24, SHOULDER_Y), (66, SHOULDER_Y + 10), (96, SHOULDER_Y + 60), (70, SHOULDER_Y + 76), (58, 330)]
        outline = half + [(-x, y) for x, y in reversed(half)]
        draw.polygon([p(CX + x, y) for x, y in outline], fill=look.companion)
    # Neck, head and hair (seen from behind on back views).
    draw.polygon([p(CX - 15, 84), p(CX + 15, 84), p(CX + 17, SHOULDER_Y + 6), p(CX - 17, SHOULDER_Y + 6)], fill=skin)
    head_c = p(CX, 58)
    rx, ry = 33 * s * c + 4 * s * (1 - c), 40 * s
    if look.long_hair and pose.view != "back":
        draw.polygon([p(CX - 40, 40), p(CX + 40, 40), p(CX + 46, 175), p(CX - 46, 175)], fill=look.hair)
    draw.ellipse([head_c[0] - rx, head_c[1] - ry, head_c[0] + rx, head_c[1] + ry], fill=look.hair if pose.view == "back" else skin)
    draw.chord([head_c[0] - rx - 2 * s, head_c[1] - ry - 4 * s, head_c[0] + rx + 2 * s, head_c[1] + ry * 0.6], 180, 360, fill=look.hair)
    if look.long_hair and pose.view == "back":
        draw.polygon([p(CX - 38, 50), p(CX + 38, 50), p(CX + 42, 190), p(CX - 42, 190)], fill=look.hair)


def _pattern(style: Style, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """Pattern coverage in [0, 1] over the window (pattern fixed to the cloth, in figure units)."""
    period, phase = style.pattern_period, style.pattern_phase
    if style.pattern == "solid":
        return np.zeros(fx.shape, np.float32)
    if style.pattern == "stripes":
        return (((fy + phase) % period) < period * 0.45).astype(np.float32)
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
    n = int(rng.integers(4, 9))
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
        amp = rng.uniform(0.08, 0.2) * rng.choice([-1, 1])
        dx, dy = fx - p0[0], fy - p0[1]
        along = (dx * direction[0] + dy * direction[1]) / length
        across = (dx * normal[0] + dy * normal[1]) / sigma
        taper = np.where((along > 0) & (along < 1), np.sin(np.pi * np.clip(along, 0, 1)), 0.0)
        field_ += (amp * across * np.exp(-0.5 * across**2) * taper).astype(np.float32)
    roundness = 1.0 - 0.14 * np.clip(((fx - CX) / 95.0) ** 2, 0, 1.5)
    light = 1.0 + rng.uniform(-0.1, 0.1) * (fx - CX) / 150.0 + rng.uniform(-0.06, 0.06) * (fy - 360) / 300.0
    return np.clip(field_ * roundness * light, 0.55, 1.35).astype(np.float32)


def _render_figure(
    item: ItemSpec, garment: Garment, pose: Pose, m: np.ndarray, size: tuple[int, int], look: Look, rng: np.random.Generator
) -> _Layers:
    """Draw model and garment into a transparent canvas; ``m`` maps figure -> canvas (similarity)."""
    w, h = size
    s = float(m[0, 0])
    base = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    _mannequin(ImageDraw.Draw(base), m, item, pose, look)
    arr = np.asarray(base, dtype=np.float32)
    alpha = arr[..., 3] / 255.0
    rgb = arr[..., :3] * alpha[..., None]

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
    pat = _pattern(st, px_, fy)
    colour = np.asarray(COLOURS[st.colour], np.float32)
    pcol = np.asarray(COLOURS[st.pattern_colour], np.float32)
    tex = colour + (pcol - colour) * pat[..., None]
    light = np.ones((wh, ww), np.float32)  # per-pixel brightness: fabric, part, seams, folds
    if st.fabric:  # fine weave, faded out where it would alias
        period = 5.0
        fade = float(np.clip((s * period - 2.0) / 2.0, 0.0, 1.0))
        weave = ((fx + fy) % period < period / 2) if st.fabric == "denim" else (fx % period < period / 2)
        light -= 0.08 * fade * weave
    shade_rng = np.random.default_rng(rng.integers(1 << 63))
    small = (max(2, ww // 4), max(2, wh // 4))
    sy_, sx_ = np.mgrid[0 : small[1], 0 : small[0]].astype(np.float32)
    sfx = (x0 + (sx_ + 0.5) * ww / small[0] - 0.5 - m[0, 2]) / s
    sfy = (y0 + (sy_ + 0.5) * wh / small[1] - 0.5 - m[1, 2]) / s
    shade_small = _fold_field(shade_rng, item, garment, sfx, sfy)
    light *= np.asarray(Image.fromarray(shade_small, mode="F").resize((ww, wh), Image.Resampling.BILINEAR), np.float32)

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
                darken(painter.local_line(_apply(m, line), width * s), mask, 0.55)
        if name == "body":
            for b in garment.buttons:
                q = _apply(m, _arr(b - 3.6, b + 3.6))
                overlay(painter.local(q, lambda d, px, q=q: d.ellipse([*px(q)[0], *px(q)[1]], fill=255)), mask, colour * 0.45 + 20)
        # A thin darker seam along the part outline separates overlapping parts.
        dark *= 1.0 - 0.3 * (mask - _erode(mask)) * mask
        part_masks.append((name, mask))
    col = (tex + (over - tex) * over_a[..., None]) * (light * bright * dark)[..., None]
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
    return _Layers(rgb, alpha, garment_cov, lm_canvas, self_occ)


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


# --------------------------------------------------------------------------------------------
# Writing the benchmark
# --------------------------------------------------------------------------------------------


@dataclass
class ImageRecord:
    """Labels of one written image (paths relative to its layout root)."""

    layout: str  # inshop / consumer2shop
    path: str
    item_index: int
    clothes_type: int
    code: int  # pose_type (In-shop) or source_type 1 shop / 2 consumer (Consumer-to-shop)
    variation: int
    bbox: tuple[int, int, int, int]
    landmarks: list[tuple[int, int, int]]  # (vis, x, y) per landmark of the clothes type, file order
    split: str  # In-shop: train/query/gallery; Consumer-to-shop: train/val/test


def _record(layout: str, path: str, item: ItemSpec, code: int, r: RenderedImage, split: str) -> ImageRecord:
    ct = item.style.clothes_type
    triples = [(int(r.visibility[j]), int(r.landmarks[j, 0]), int(r.landmarks[j, 1])) for j in CLOTHES_TYPE_SLOTS[ct]]
    return ImageRecord(layout, path, item.index, ct, code, r.variation_type, r.bbox, triples, split)


def _save_jpeg(img: Image.Image, path: Path, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=quality)


def _render_item(task) -> list[ImageRecord]:
    """Worker: render and save every image of one item; return their labels."""
    item, spec, root, seed = task
    root = Path(root)
    rng = np.random.default_rng([seed, 3, item.index])
    records: list[ImageRecord] = []
    # In-shop studio views: a front view and a random subset of the others.
    n_views = int(rng.integers(spec.inshop_views[0], spec.inshop_views[1] + 1))
    others = ["side", "back", "full", "additional"]
    chosen = ["front"] + [others[i] for i in sorted(rng.choice(len(others), size=min(len(others), n_views - 1), replace=False))]
    folder = f"img/{item.style.gender}/{item.style.category}/{item.item_id}"
    inshop: list[ImageRecord] = []
    for k, view in enumerate(chosen, start=1):
        r = render_shop_image(item, view, rng)
        rel = f"{folder}/{k:02d}_{VIEW_CODES[view]}_{view}.jpg"
        _save_jpeg(r.image, root / "inshop" / rel, r.jpeg_quality)
        inshop.append(_record("inshop", rel, item, VIEW_CODES[view], r, "train"))
    if item.split_inshop == "test":  # about half the images are queries; at least one of each
        order = rng.permutation(len(inshop))
        n_query = min(len(inshop) - 1, max(1, (len(inshop) + 1) // 2))
        for rank, i in enumerate(order):
            inshop[i].split = "query" if rank < n_query else "gallery"
    records += inshop
    # Consumer-to-shop: studio shots and consumer photos of the same item.
    folder = f"img/{item.category.group}/{item.style.category}/{item.item_id}"
    n_shop = int(rng.integers(spec.shop_images[0], spec.shop_images[1] + 1))
    for k in range(1, n_shop + 1):
        view = "front" if k == 1 or rng.random() < 0.5 else str(rng.choice(["side", "back"]))
        r = render_shop_image(item, view, rng)
        rel = f"{folder}/shop_{k:02d}.jpg"
        _save_jpeg(r.image, root / "consumer2shop" / rel, r.jpeg_quality)
        records.append(_record("consumer2shop", rel, item, 1, r, item.split_c2s))
    n_consumer = int(rng.integers(spec.consumer_images[0], spec.consumer_images[1] + 1))
    for k in range(1, n_consumer + 1):
        r = render_consumer_image(item, rng)
        rel = f"{folder}/comsumer_{k:02d}.jpg"  # sic: the real dataset spells it "comsumer"
        _save_jpeg(r.image, root / "consumer2shop" / rel, r.jpeg_quality)
        records.append(_record("consumer2shop", rel, item, 2, r, item.split_c2s))
    return records


def _table(path: Path, header: str, rows: list[str], count: int | None = None) -> None:
    """Write a DeepFashion list file: count line, header line, records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(f"{len(rows) if count is None else count}\n{header}\n")
        for row in rows:
            fh.write(row + "\n")


def _landmark_header() -> str:
    cols = ["image_name", "clothes_type", "variation_type"]
    for i in range(1, NUM_LANDMARKS + 1):
        cols += [f"landmark_visibility_{i}", f"landmark_location_x_{i}", f"landmark_location_y_{i}"]
    return " ".join(cols)


def _pad(name: str, width: int) -> str:
    return name.ljust(width)  # the real files align columns with spaces


def _write_shared_anno(anno: Path, kind: str, items: list[ItemSpec], records: list[ImageRecord]) -> None:
    """Item, attribute and category files common to both layouts (``kind``: inshop / consumer2shop)."""
    ids = [it.item_id for it in items]
    with open(anno / f"list_item_{kind}.txt", "w", encoding="utf-8", newline="\n") as fh:  # count line only, no header
        fh.write(f"{len(ids)}\n" + "".join(f"{i}\n" for i in ids))
    _table(anno / "list_attr_cloth.txt", "attribute_name  attribute_type", [f"{_pad(n, 28)} {t}" for n, t in ATTRIBUTES])
    _table(
        anno / "list_attr_items.txt",
        "item_id  attribute_labels",
        [f"{it.item_id} " + " ".join(str(int(v)) for v in item_attributes(it)) for it in items],
    )
    _table(anno / "list_category_cloth.txt", "category_name  category_type", [f"{_pad(c.name, 20)} {c.clothes_type}" for c in CATEGORIES])
    label = {c.name: i + 1 for i, c in enumerate(CATEGORIES)}
    width = max(len(r.path) for r in records) + 1
    rows = [f"{_pad(r.path, width)} {label[items[r.item_index].style.category]}" for r in records]
    _table(anno / "list_category_img.txt", "image_name  category_label", rows)


def _write_landmarks_and_boxes(anno: Path, kind: str, records: list[ImageRecord]) -> None:
    width = max(len(r.path) for r in records) + 1
    code_name = "pose_type" if kind == "inshop" else "source_type"
    _table(
        anno / f"list_bbox_{kind}.txt",
        f"image_name  clothes_type  {code_name}  x_1  y_1  x_2  y_2",
        [f"{_pad(r.path, width)} {r.clothes_type} {r.code} " + " ".join(str(v) for v in r.bbox) for r in records],
    )
    _table(
        anno / f"list_landmarks_{kind}.txt",
        _landmark_header(),
        [f"{_pad(r.path, width)} {r.clothes_type} {r.variation} " + " ".join(f"{v} {x} {y}" for v, x, y in r.landmarks) for r in records],
    )


def _write_inshop(root: Path, items: list[ItemSpec], records: list[ImageRecord]) -> None:
    anno, ev = root / "Anno", root / "Eval"
    anno.mkdir(parents=True, exist_ok=True)
    _write_shared_anno(anno, "inshop", items, records)
    _write_landmarks_and_boxes(anno, "inshop", records)
    width = max(len(r.path) for r in records) + 1
    rows = [f"{_pad(r.path, width)} {items[r.item_index].item_id} {r.split}" for r in records]
    _table(ev / "list_eval_partition.txt", "image_name item_id evaluation_status", rows)
    desc = [{"item": it.item_id, "color": it.style.colour, "description": describe_item(it)} for it in items]
    with open(anno / "list_description_inshop.json", "w", encoding="utf-8", newline="\n") as fh:
        json.dump(desc, fh, indent=1)
        fh.write("\n")


def _write_consumer2shop(root: Path, items: list[ItemSpec], records: list[ImageRecord]) -> None:
    anno, ev = root / "Anno", root / "Eval"
    anno.mkdir(parents=True, exist_ok=True)
    _write_shared_anno(anno, "consumer2shop", items, records)
    _write_landmarks_and_boxes(anno, "consumer2shop", records)
    types = [f"{_pad(name, 10)} {i}" for i, name in ATTRIBUTE_TYPES.items()]
    _table(anno / "list_attr_type.txt", "attribute_type_name  attribute_type_id", types)
    by_item: dict[int, tuple[list[ImageRecord], list[ImageRecord]]] = {}
    for r in records:
        shops, consumers = by_item.setdefault(r.item_index, ([], []))
        (shops if r.code == 1 else consumers).append(r)
    rows = []
    width = max(len(r.path) for r in records) + 1
    for idx in sorted(by_item):  # one row per (consumer photo, shop photo) pair of an item
        shops, consumers = by_item[idx]
        for c in consumers:
            for s in shops:
                rows.append(f"{_pad(c.path, width)} {_pad(s.path, width)} {items[idx].item_id} {items[idx].split_c2s}")
    _table(ev / "list_eval_partition.txt", "image_pair_name_1 image_pair_name_2 item_id evaluation_status", rows)


def _manifest(items: list[ItemSpec], size: str, seed: int, counts: dict) -> dict:
    return {
        "generator": "fashionnet.data.synthetic",
        "version": GENERATOR_VERSION,
        "size": size,
        "seed": seed,
        "items": len(items),
        "families": len({it.family for it in items}),
        "images": counts,
        "family_of_item": {it.item_id: it.family for it in items},
    }


def _check_replaceable(out: Path) -> None:
    """Only an empty directory or one this generator wrote may be replaced."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory; refusing to replace it")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise FileExistsError(
            f"{out}: directory is not empty and has no {MANIFEST_NAME}; refusing to overwrite data this generator did not write"
        )


def generate_synthetic_deepfashion(
    out_dir, size: str = "default", seed: int = 0, workers: int | None = None, progress: bool = True
) -> dict:
    """Write ``out_dir/inshop`` and ``out_dir/consumer2shop`` (official DeepFashion layouts).

    Deterministic for a given ``seed`` and ``size`` whatever the number of ``workers`` (each item
    draws from its own seeded stream). Everything is written to a temporary directory next to
    ``out_dir`` and renamed into place at the end, so an interrupted run never leaves a half-written
    dataset; an existing ``out_dir`` is replaced only if this generator wrote it.
    Returns a summary: items, families, images per layout, seconds, images/s.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {sorted(SIZES)}")
    spec = SIZES[size]
    out = Path(out_dir).absolute()
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    start = time.perf_counter()
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    try:
        items = make_items(spec, seed)
        tasks = [(it, spec, str(tmp), seed) for it in items]
        bar = tqdm(total=len(items), desc=f"synthetic DeepFashion ({size})", unit="item", disable=not progress)
        results: list[list[ImageRecord]] = []
        if workers > 1:
            # spawn: safe even when the parent already runs threads (torch, pytest plugins).
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for recs in pool.imap(_render_item, tasks, chunksize=2):
                    results.append(recs)
                    bar.update(1)
        else:
            for task in tasks:
                results.append(_render_item(task))
                bar.update(1)
        bar.close()
        records = [r for recs in results for r in recs]
        inshop = [r for r in records if r.layout == "inshop"]
        c2s = [r for r in records if r.layout == "consumer2shop"]
        _write_inshop(tmp / "inshop", items, inshop)
        _write_consumer2shop(tmp / "consumer2shop", items, c2s)
        counts = {
            "inshop": len(inshop),
            "consumer2shop_shop": sum(r.code == 1 for r in c2s),
            "consumer2shop_consumer": sum(r.code == 2 for r in c2s),
        }
        with open(tmp / MANIFEST_NAME, "w", encoding="utf-8", newline="\n") as fh:
            json.dump(_manifest(items, size, seed, counts), fh, indent=1)
            fh.write("\n")
        _check_replaceable(out)  # still ours (nobody filled it meanwhile)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    total = len(records)
    return {
        "out_dir": str(out),
        "size": size,
        "seed": seed,
        "workers": workers,
        "items": len(items),
        "families": len({it.family for it in items}),
        "images": {**counts, "total": total},
        "seconds": round(seconds, 2),
        "images_per_second": round(total / seconds, 1) if seconds > 0 else float("inf"),
    }


# --------------------------------------------------------------------------------------------
# Preview contact sheet
# --------------------------------------------------------------------------------------------

VIS_COLOURS = {VISIBLE: (40, 200, 60), OCCLUDED: (255, 150, 0), TRUNCATED: (230, 30, 30)}


def _read_rows(path: Path) -> list[list[str]]:
    """Records of a DeepFashion list file (skips the count and header lines)."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    return [ln.split() for ln in lines[2:] if ln.strip()]


def _labels_by_image(root: Path, kind: str) -> dict[str, tuple[int, list[tuple[int, int, int]], tuple[int, ...]]]:
    """image -> (source/pose code, landmark triples, bbox), parsed from the files we wrote."""
    boxes = {r[0]: (int(r[2]), tuple(int(v) for v in r[3:7])) for r in _read_rows(root / "Anno" / f"list_bbox_{kind}.txt")}
    out = {}
    for r in _read_rows(root / "Anno" / f"list_landmarks_{kind}.txt"):
        vals = [int(float(v)) for v in r[3:]]
        triples = [tuple(vals[i : i + 3]) for i in range(0, len(vals), 3)]
        code, box = boxes[r[0]]
        out[r[0]] = (code, triples, box)
    return out


def write_preview(out_dir, png_path, rows: int = 4, cols: int = 8, thumb: int = 150) -> Path:
    """Contact sheet of Consumer-to-shop items: a shop photo and a consumer photo of the same item
    side by side, landmarks coloured by visibility (green visible, orange occluded, red truncated)."""
    from fashionnet.images import load_image

    root = Path(out_dir) / "consumer2shop"
    labels = _labels_by_image(root, "consumer2shop")
    by_item: dict[str, dict[str, list[str]]] = {}
    for name, (code, _, _) in labels.items():
        item = name.split("/")[-2]
        by_item.setdefault(item, {"shop": [], "consumer": []})["shop" if code == 1 else "consumer"].append(name)
    # Prefer variety: walk the items category by category.
    by_cat: dict[str, list[str]] = {}
    for item, imgs in sorted(by_item.items()):
        if imgs["shop"] and imgs["consumer"]:
            by_cat.setdefault(imgs["shop"][0].split("/")[-3], []).append(item)
    picked: list[str] = []
    pairs_needed = rows * cols // 2
    while len(picked) < pairs_needed and any(by_cat.values()):
        for cat in sorted(by_cat):
            if by_cat[cat] and len(picked) < pairs_needed:
                picked.append(by_cat[cat].pop(0))
    legend_h = 26
    sheet = Image.new("RGB", (cols * thumb, rows * thumb + legend_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    cells = []
    for item in picked:
        imgs = by_item[item]
        cells += [imgs["shop"][0], imgs["consumer"][0]]
    for i, name in enumerate(cells):
        img = load_image(root / name)
        code, triples, box = labels[name]
        scale = thumb / max(img.size)
        tw, th = max(1, round(img.width * scale)), max(1, round(img.height * scale))
        ox, oy = (i % cols) * thumb + (thumb - tw) // 2, (i // cols) * thumb + (thumb - th) // 2
        sheet.paste(img.resize((tw, th), Image.Resampling.BILINEAR), (ox, oy))
        x1, y1, x2, y2 = (v * scale for v in box)
        draw.rectangle([ox + x1, oy + y1, ox + x2, oy + y2], outline=(60, 120, 255))
        for v, x, y in triples:
            if v in VIS_COLOURS:
                cx_, cy_ = ox + x * scale, oy + y * scale
                draw.ellipse([cx_ - 3, cy_ - 3, cx_ + 3, cy_ + 3], fill=VIS_COLOURS[v], outline=(0, 0, 0))
        caption = ("shop " if code == 1 else "consumer ") + name.split("/")[-2][-4:]
        draw.text(((i % cols) * thumb + 3, (i // cols) * thumb + 2), caption, fill=(0, 0, 0), font=font)
    y = rows * thumb + 7
    x = 6
    for v, label in ((VISIBLE, "visible"), (OCCLUDED, "occluded"), (TRUNCATED, "truncated")):
        draw.ellipse([x, y + 2, x + 10, y + 12], fill=VIS_COLOURS[v], outline=(0, 0, 0))
        draw.text((x + 14, y + 1), label, fill=(0, 0, 0), font=font)
        x += 90
    draw.rectangle([x, y + 2, x + 10, y + 12], outline=(60, 120, 255))
    draw.text((x + 14, y + 1), "garment box   (pairs: shop | consumer photo of one item)", fill=(0, 0, 0), font=font)
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(png_path)
    return png_path


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``fashionnet-synth --out DIR [--size default] [--seed 0] [--workers N] [--preview PNG]``."""
    parser = argparse.ArgumentParser(description="Generate a synthetic DeepFashion benchmark (In-shop and Consumer-to-shop layouts).")
    parser.add_argument("--out", required=True, help="output directory (replaced if this generator wrote it)")
    parser.add_argument("--size", default="default", choices=sorted(SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
    parser.add_argument("--preview", default=None, help="also write a contact sheet PNG here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        summary = generate_synthetic_deepfashion(args.out, size=args.size, seed=args.seed, workers=args.workers, progress=not args.quiet)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.preview:
        summary["preview"] = str(write_preview(args.out, args.preview))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
