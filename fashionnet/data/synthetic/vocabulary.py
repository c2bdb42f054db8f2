"""Vocabulary of the synthetic benchmark: categories, colours, patterns, attributes, sizes and views.

The category and attribute tuples are in the order their list files are written (labels are
1-based indices into them); :data:`SIZES` names the dataset sizes the generator knows.
"""

from __future__ import annotations

from dataclasses import dataclass

from fashionnet.landmarks import FULL_BODY, LOWER_BODY, UPPER_BODY


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

# Colour attribute names with a representative shade each (the exact shades come from the palette
# families of appearance.PALETTES). White garments are shown on backgrounds chosen to contrast.
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
    "white": (236, 236, 232),
}
PATTERNS = ("solid", "stripes", "checks", "dots", "motif")
PRINT_SHAPES = ("star", "heart", "circle")
SKIN_TONES = ((244, 214, 190), (236, 200, 170), (214, 168, 130), (192, 142, 102), (170, 118, 82), (112, 74, 52), (84, 56, 40))
HAIR_COLOURS = ((28, 22, 20), (80, 52, 32), (150, 110, 60), (214, 184, 120), (120, 52, 30), (160, 160, 160))
COMPANION_COLOURS = ((44, 44, 50), (64, 80, 118), (186, 172, 140), (226, 226, 220), (118, 118, 124))
GLASSES_FRAMES = ((24, 22, 22), (120, 84, 48), (176, 150, 96), (150, 150, 156))  # black, tortoiseshell, gold, steel

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
    style_shift_families: int = 0  # families of new items in the held-out styles (style_shift/)
    style_shift_shop: tuple[int, int] = (2, 2)  # studio images per style-shift item
    style_shift_consumer: tuple[int, int] = (2, 3)  # consumer photos per style-shift item
    # Share of in-style photos drawn as plain catalogue shots (worn or on a mannequin, studio paper,
    # the garment filling the frame). "tiny" is for unit tests, whose 2-minute models must still learn.
    catalogue_share: float = 0.0


SIZES: dict[str, SizeSpec] = {
    # 24 items, about 130 images: every clothes type, every split; a few seconds.
    "tiny": SizeSpec(6, 4, inshop_views=(2, 4), shop_images=(1, 1), consumer_images=(1, 2), style_shift_families=2, style_shift_shop=(1, 1), style_shift_consumer=(1, 2),
                     catalogue_share=1.0),
    "small": SizeSpec(30, 4, inshop_views=(3, 5), shop_images=(1, 2), consumer_images=(1, 3), style_shift_families=6),
    # 500 items, about 3,800 images; plus 96 style-shift items, about 190 shop and 240 consumer photos.
    "default": SizeSpec(125, 4, inshop_views=(3, 5), shop_images=(1, 2), consumer_images=(1, 3), style_shift_families=24),
}

# In-shop views: name -> pose_type code (also the V in NN_V_view.jpg).
VIEW_CODES = {"front": 1, "side": 2, "back": 3, "full": 4, "additional": 5}
SHOP_SIZE = 256  # In-shop images are 256 x 256
CONSUMER_SIDE_RANGE = (200, 360)
