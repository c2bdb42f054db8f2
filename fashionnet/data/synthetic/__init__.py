"""Seeded generator of a synthetic DeepFashion benchmark in the official file layouts.

There is no internet here and the real DeepFashion cannot be shipped, so tests, demos and training
runs use this generator. It writes three datasets:

* ``OUT/inshop/``: the In-shop Clothes Retrieval layout (catalogue shots, several views per item);
* ``OUT/consumer2shop/``: the Consumer-to-shop layout (catalogue shots plus "consumer" photos);
* ``OUT/style_shift/``: a Consumer-to-shop test set of NEW items in held-out styles (palette,
  texture, presentation and scene families the other two never show; see :mod:`.style_shift`);

plus ``OUT/styles.csv`` (the style factors of every image) and ``OUT/SYNTHETIC.json``.

Labels. Items come in *families* that share category, colour, body pattern, fabric, cut and
decoration (logo, pockets, zip, collar style) and differ ONLY in local details at the landmark
regions: collar trim, cuff band, hem band, waistband/belt and a small print near the hem. Global
appearance alone cannot tell family members apart; a landmark-pooling model can. Family members
share a split, so test galleries hold their hard negatives.

Photographs by domain randomisation. A model trained on flat cartoons fails on real photos, mostly
for geometric reasons (how garments are presented and what surrounds them), so every photo draws:
catalogue palettes (mostly neutrals) and fabric textures (:mod:`.appearance`); folds, drape and
light from one side (:mod:`.figure`, :mod:`.shading`); a presentation mode - worn by a person with a
face and a pose (arms down, hands on hips, walking, turned), on a mannequin, on a hanger, clipped up
by two holders (:mod:`.holders`), laid flat
(:mod:`.bodies`); a framing (the garment, an upper-body crop, the full body, a wide shot, a detail
zoom); a scene family - studio, room, street, floor, table, or the user's own photos
(``backgrounds=``), with furniture, clutter and bystanders (:mod:`.scenes`); occluders; and a camera
with perspective, lens and motion blur, exposure, white balance, noise and JPEG (:mod:`.camera`).

Geometry. Every garment is built as polygons in a 400 x 720 "figure" frame (a standing person,
x right, y down); its landmarks come from the same template geometry (neckline ends, cuff centres,
waist corners, hem corners / leg openings), moved a few units inside the garment the way an
annotator clicks on the cloth (corners are rounded by less than that inset). A photo maps the
figure frame to the canvas with a similarity applied to the polygon vertices and, when the camera
is rotated or tilted, warps the canvas *pixels* with a homography; landmarks go through exactly the
same matrices (:mod:`.presentation`). Coordinates use the pixel-index convention (integer = pixel
centre), as ImageDraw does; :func:`.raster._warp` converts to PIL's ``transform`` convention.
Visibility is decided from the masks that were drawn: a landmark is occluded (1) when garment parts
drawn over it (turned bodies), occluders (arms, bags, hair) or supports (clips, pegs) cover its
pixel and at least half of a small disc around it; it is truncated (2) when it falls outside the
frame, and its stored coordinate is then clamped to the frame.

Left and right. "Left" is the image's left on every view (DeepFashion's convention). On back views
the garment is seen from behind, i.e. mirrored: the wearer's left sleeve is on the image right. We
build the back view from the same symmetric template (high back neckline, no front print, buttons
or opening) and still assign slots by image side, so ``left_*`` is always the point nearer x = 0.

Modules, in the order the generator uses them: :mod:`.vocabulary` (categories, colour names,
attributes, sizes), :mod:`.appearance` (palettes, textures, logos), :mod:`.items` (families and
their items), :mod:`.geometry` (garment polygons and landmarks in the figure frame), :mod:`.poses` (limb angles per photo),
:mod:`.raster` (transforms and masks), :mod:`.bodies` (people, mannequins, hangers, hooks, pegs), :mod:`.holders` (arms, stands, strings and hands that clip a garment up; studio and room clutter),
:mod:`.shading` (lit, rounded shapes and soft shadows), :mod:`.figure` (body and garment painted
into a canvas), :mod:`.scenes` (backgrounds), :mod:`.camera` (the sensor), :mod:`.photos` (labels
and occluders), :mod:`.presentation` (one photo: mode, scene, framing, camera, labels),
:mod:`.style_shift` (held-out styles, styles.csv), :mod:`.writers` (the list files and
:func:`generate_synthetic_deepfashion`), :mod:`.preview` (a contact sheet) and :mod:`.cli`
(``fashionnet-synth``). This package re-exports their public names.
"""

from __future__ import annotations

from fashionnet.data.synthetic.cli import main
from fashionnet.data.synthetic.geometry import CX, FIG_H, FIG_W, LANDMARK_INSET, SHOULDER_Y, Garment, build_garment
from fashionnet.data.synthetic.items import (
    Band, Details, ItemSpec, Look, Style, describe_item, item_attributes, make_items,
)
from fashionnet.data.synthetic.photos import RenderedImage
from fashionnet.data.synthetic.poses import Pose, sample_pose
from fashionnet.data.synthetic.presentation import render_consumer_image, render_photo, render_shop_image
from fashionnet.data.synthetic.preview import VIS_COLOURS, write_preview
from fashionnet.data.synthetic.scenes import SCENES, readable_backgrounds
from fashionnet.data.synthetic.style_shift import HELD_OUT, STYLES_FILE
from fashionnet.data.synthetic.vocabulary import (
    ATTRIBUTE_NAMES, ATTRIBUTE_TYPES, ATTRIBUTES, CATEGORIES, CATEGORY_BY_NAME, COLOURS, COMPANION_COLOURS,
    CONSUMER_SIDE_RANGE, DETAIL_ATTRIBUTES, HAIR_COLOURS, PATTERNS, PRINT_SHAPES, SHOP_SIZE, SIZES, SKIN_TONES,
    VIEW_CODES, Category, SizeSpec,
)
from fashionnet.data.synthetic.writers import (
    GENERATOR_VERSION, MANIFEST_NAME, ImageRecord, generate_synthetic_deepfashion,
)

__all__ = [
    "ATTRIBUTE_NAMES", "ATTRIBUTE_TYPES", "ATTRIBUTES", "CATEGORIES", "CATEGORY_BY_NAME", "COLOURS",
    "COMPANION_COLOURS", "CONSUMER_SIDE_RANGE", "DETAIL_ATTRIBUTES", "HAIR_COLOURS", "PATTERNS", "PRINT_SHAPES",
    "SHOP_SIZE", "SIZES", "SKIN_TONES", "VIEW_CODES", "Category", "SizeSpec", "Band", "Details", "ItemSpec", "Look",
    "Style", "describe_item", "item_attributes", "make_items", "CX", "FIG_H", "FIG_W", "LANDMARK_INSET",
    "SHOULDER_Y", "Garment", "Pose", "build_garment", "sample_pose", "RenderedImage", "render_consumer_image",
    "render_shop_image", "GENERATOR_VERSION", "MANIFEST_NAME", "ImageRecord", "generate_synthetic_deepfashion",
    "VIS_COLOURS", "write_preview", "main", "render_photo", "SCENES", "readable_backgrounds", "HELD_OUT", "STYLES_FILE",
]
