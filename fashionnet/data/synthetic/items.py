"""Items of the synthetic benchmark: families of garments that differ only in local details.

A family shares category, colour, body pattern, fabric, cut and photo session (:class:`Style`,
:class:`Look`); its members differ only in the bands and prints at landmark regions
(:class:`Details`). :func:`make_items` draws every item of a size from a seed;
:func:`item_attributes` and :func:`describe_item` give the labels and text written for an item.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fashionnet.data.synthetic.appearance import (
    TEXTURES, detail_colours, pick_shade, sample_logo, sample_palette_family, sample_texture_family,
)
from fashionnet.data.synthetic.vocabulary import (
    ATTRIBUTE_NAMES,
    CATEGORY_BY_NAME,
    COMPANION_COLOURS,
    DETAIL_ATTRIBUTES,
    _FAMILY_CATEGORY_CYCLE,
    GLASSES_FRAMES,
    HAIR_COLOURS,
    _PATTERN_ATTRIBUTE,
    PATTERNS,
    PRINT_SHAPES,
    SIZES,
    SKIN_TONES,
    Category,
    SizeSpec,
)
from fashionnet.landmarks import FULL_BODY, LOWER_BODY, UPPER_BODY


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
    shoes: tuple[int, int, int] = (40, 34, 32)
    hair_style: str = "short"  # over the crown: short / curly / buzz / bun (long hair adds a fall behind)
    glasses: tuple[int, int, int] | None = None  # frame colour, or no glasses


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
    palette: str = "saturated"  # palette family of the shades (appearance.PALETTES)
    texture: str = "woven"  # texture family (appearance.TEXTURES)
    rgb: tuple[int, int, int] = (128, 128, 128)  # exact body shade (``colour`` is its attribute name)
    pattern_rgb: tuple[int, int, int] = (0, 0, 0)
    collar: str = "crew"  # crew / v / polo / hood (tops and dresses), n/a otherwise
    logo: tuple[str, int] | None = None  # chest logo or text print (family-wide, away from landmarks)
    pockets: bool = False
    zip: bool = False  # jackets: a zip instead of buttons
    check: str = "gingham"  # what the "checks" pattern looks like: gingham, or the held-out houndstooth / plaid


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


def _pick_colour(rng: np.random.Generator, avoid, min_dist: float = 90.0, palette: str = "saturated") -> tuple[int, int, int]:
    """A trim colour of ``palette``'s detail colours at least ``min_dist`` from every ``avoid`` colour (or the farthest)."""
    cols = detail_colours(palette)
    order = rng.permutation(len(cols))
    for i in order:
        c = cols[i]
        if all(_dist(c, a) >= min_dist for a in avoid):
            return c
    return max(cols, key=lambda c: min(_dist(c, a) for a in avoid))


def _sample_style(rng: np.random.Generator, category: Category, palette: str | None = None, texture: str | None = None) -> Style:
    """A family's style; ``palette`` / ``texture`` force a family (the style-shift split's held-out ones)."""
    u = rng.uniform
    name, ct = category.name, category.clothes_type
    gender = "MEN" if rng.random() < category.men_share else "WOMEN"
    palette = palette or sample_palette_family(rng)
    texture = texture or sample_texture_family(rng, name)
    colour, rgb = pick_shade(rng, palette)
    if texture == "tweed":  # the held-out texture family always shows houndstooth or plaid checks
        pattern = "checks"
    elif palette == "neutral" or texture in ("denim", "knit"):  # most catalogue neutrals are plain
        pattern = str(rng.choice(PATTERNS, p=[0.6, 0.15, 0.1, 0.07, 0.08]))
    else:
        pattern = str(rng.choice(PATTERNS, p=[0.35, 0.2, 0.13, 0.14, 0.18]))
    pattern_colour, pattern_rgb = pick_shade(rng, palette if palette == "earth" else str(rng.choice(["neutral", palette])), [rgb], 80)
    fabric = TEXTURES[texture]
    men = gender == "MEN"
    d: dict[str, float] = {}
    sleeve, neck, collar = "n/a", "n/a", "n/a"
    if ct in (UPPER_BODY, FULL_BODY):
        if name in ("Tanks",) or (ct == FULL_BODY and rng.random() < 0.55):
            sleeve = "none"
        elif name in ("Long_Sleeve", "Jackets"):
            sleeve = "long"
        else:
            sleeve = "short"
        neck = "v" if name == "Jackets" or (name != "Tanks" and rng.random() < 0.35) else "round"
        collar = "v" if neck == "v" else "crew"
        if neck == "round" and name in ("Tees", "Long_Sleeve") and rng.random() < 0.4:
            collar = str(rng.choice(["polo", "hood"], p=[0.55, 0.45] if name == "Long_Sleeve" else [0.8, 0.2]))
        d["neck_half"] = u(27, 34) if sleeve == "none" else u(21, 27)
        if neck == "v":
            d["neck_depth"] = u(42, 62)
        else:
            d["neck_depth"] = u(26, 40) if sleeve == "none" else u(12, 20)
        d["chest_half"] = u(56, 63) if men else u(51, 57)
        d["shoulder_half"] = d["neck_half"] + u(9, 13) if sleeve == "none" else (u(66, 73) if men else u(60, 67))
        d["armhole_depth"] = u(62, 72) if sleeve == "none" else 50.0
        d["sleeve_len"] = {"short": u(48, 66), "long": u(178, 198)}.get(sleeve, 0.0)
        long_cuff = u(14, 18) if name == "Jackets" else (u(12, 15) if rng.random() < 0.8 else u(16, 24))  # some wide sleeves
        d["cuff_half"] = {"short": u(19, 24), "long": long_cuff}.get(sleeve, 0.0)
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
            # Trousers from skinny to wide-leg.
            d["open_half"] = float(rng.choice([u(13, 18), u(19, 25), u(28, 38)], p=[0.25, 0.5, 0.25])) if name == "Trousers" else u(29, 36)
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
        buttons=bool(rng.random() < buttons_p) or collar == "polo",
        dims={k: float(v) for k, v in d.items()},
        palette=palette,
        texture=texture,
        rgb=rgb,
        pattern_rgb=pattern_rgb,
        collar=collar,
        logo=sample_logo(rng) if ct != LOWER_BODY and pattern == "solid" else None,
        pockets=bool(name in ("Jackets", "Trousers", "Shorts", "Jumpsuits") and rng.random() < 0.6),
        zip=bool(name == "Jackets" and rng.random() < 0.4),
        check=str(rng.choice(["houndstooth", "plaid"])) if texture == "tweed" else "gingham",
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
    avoid = [style.rgb, style.pattern_rgb]
    scale = _DETAIL_SCALE.get(style.category, 1.0)
    bands: dict[str, Band | None] = {}
    sporty = rng.random() < 0.3
    for slot in _detail_slots(style):
        if rng.random() < 0.55:
            colour = _pick_colour(rng, avoid, palette=style.palette)
            stripe = _pick_colour(rng, avoid + [colour], 70, palette=style.palette) if sporty else None
            bands[slot] = Band(colour, float(rng.uniform(10, 16) * scale), stripe)
        else:
            bands[slot] = None
    shape = rng.choice([None, *PRINT_SHAPES], p=[0.4, 0.2, 0.2, 0.2])
    return Details(
        **bands,
        print_shape=None if shape is None else str(shape),
        print_colour=_pick_colour(rng, avoid, palette=style.palette),
        print_size=float(rng.uniform(17, 23) * scale),
    )


def _sample_look(rng: np.random.Generator, gender: str) -> Look:
    tint = rng.integers(-6, 7, 3)
    grey = int(rng.integers(230, 247))
    return Look(
        skin=SKIN_TONES[int(rng.integers(len(SKIN_TONES)))],
        hair=HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))],
        long_hair=bool(gender == "WOMEN" and rng.random() < 0.7),
        hair_style=str(rng.choice(["short", "curly", "buzz", "bun"], p=[0.55, 0.2, 0.15, 0.1] if gender == "MEN" else [0.3, 0.3, 0.0, 0.4])),
        companion=COMPANION_COLOURS[int(rng.integers(len(COMPANION_COLOURS)))],
        background=tuple(int(np.clip(grey + t, 0, 255)) for t in tint),
        shoes=((40, 34, 32), (230, 228, 222), (110, 70, 44), (30, 30, 60))[int(rng.integers(4))],
        glasses=GLASSES_FRAMES[int(rng.integers(len(GLASSES_FRAMES)))] if rng.random() < 0.2 else None,
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
    return _family_items(families, spec.family_size, split_of, first_index=0, first_family=0)


def make_held_out_items(n_families: int, family_size: int, seed: int, palette: str, texture: str, first_index: int, first_family: int) -> list[ItemSpec]:
    """New test-only items whose palette and texture families are forced (the style-shift split)."""
    families = []
    for f in range(n_families):
        rng = np.random.default_rng([seed, 7, f])
        category = CATEGORY_BY_NAME[_FAMILY_CATEGORY_CYCLE[f % len(_FAMILY_CATEGORY_CYCLE)]]
        families.append((_sample_style(rng, category, palette=palette, texture=texture), rng))
    return _family_items(families, family_size, {f: "test" for f in range(n_families)}, first_index, first_family)


def _family_items(families, family_size: int, split_of: dict, first_index: int, first_family: int) -> list[ItemSpec]:
    items: list[ItemSpec] = []
    for f, (style, rng) in enumerate(families):
        look = _sample_look(rng, style.gender)
        seen: list[tuple[int, ...]] = []
        for _ in range(family_size):
            # Members must differ in at least one detail attribute.
            for _ in range(200):
                details = _sample_details(rng, style)
                signature = _detail_signature(style, details)
                if signature not in seen:
                    break
            else:
                raise RuntimeError(f"could not find {family_size} distinct detail sets for family {f}")
            seen.append(signature)
            index = first_index + len(items)
            items.append(
                ItemSpec(
                    index=index,
                    item_id=f"id_{index + 1:08d}",
                    family=first_family + f,
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
