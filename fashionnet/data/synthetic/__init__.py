"""Seeded generator of a synthetic DeepFashion benchmark in the official file layouts.

There is no internet here and the real DeepFashion cannot be shipped, so tests, demos and training
smoke runs use this generator. It writes two datasets that share one set of items:

* ``OUT/inshop/``: the In-shop Clothes Retrieval layout (studio shots, several views per item);
* ``OUT/consumer2shop/``: the Consumer-to-shop layout (studio shots plus cluttered "consumer" photos).

Both use the official file names and formats (count line, header line, records). The benchmark is
meant to be hard and honest:

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

Modules, in the order the generator uses them: :mod:`.vocabulary` (categories, colours, attributes,
sizes), :mod:`.items` (families and their items), :mod:`.geometry` (garment polygons and landmarks
in the figure frame), :mod:`.raster` (transforms and masks), :mod:`.figure` (model and garment
painted into a canvas), :mod:`.photos` (shop and consumer photos with labels), :mod:`.writers` (the
list files and :func:`generate_synthetic_deepfashion`), :mod:`.preview` (a contact sheet) and
:mod:`.cli` (``fashionnet-synth``). This package re-exports their public names.
"""

from __future__ import annotations

from fashionnet.data.synthetic.cli import main
from fashionnet.data.synthetic.geometry import (
    CX, FIG_H, FIG_W, LANDMARK_INSET, SHOULDER_Y, Garment, Pose, build_garment, sample_pose,
)
from fashionnet.data.synthetic.items import (
    Band, Details, ItemSpec, Look, Style, describe_item, item_attributes, make_items,
)
from fashionnet.data.synthetic.photos import RenderedImage
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
