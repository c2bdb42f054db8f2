"""The style-shift test split: new items in styles the in-style datasets never show.

A model that only learned the look of the training photos fails when the look changes; this split
measures that. ``OUT/style_shift/`` has the Consumer-to-shop layout (every pair ``test``) and holds
NEW items (their own item ids and families) whose style factors are all held out:

* palette family ``earth`` (rust, terracotta, mustard, olive, camel, tan) for body, pattern and trims;
* texture family ``tweed`` (houndstooth or plaid checks on a grainy twill);
* presentation ``hook`` (hung from a wall hook), ``pegs`` (pegged on a washing line) or
  ``bed_lay`` (laid out on a bed, seen from above);
* scene family ``bedroom``, ``garden`` or ``bed`` (a duvet from above).

The in-style datasets (``inshop/``, ``consumer2shop/``) never use any of these; ``OUT/styles.csv``
records the four factors (and the framing) of every image of all three datasets, and
``SYNTHETIC.json`` lists the held-out values, so this can be checked rather than trusted.
"""

from __future__ import annotations

import csv
from pathlib import Path

from fashionnet.data.synthetic.items import ItemSpec, make_held_out_items
from fashionnet.data.synthetic.presentation import HELD_OUT_MODES

HELD_OUT: dict[str, tuple[str, ...]] = {
    "presentation": HELD_OUT_MODES,
    "scene": ("bedroom", "garden", "bed"),
    "palette": ("earth",),
    "texture": ("tweed",),
}
STYLE_FACTORS = ("presentation", "scene", "palette", "texture")
STYLES_FILE = "styles.csv"
LAYOUT = "style_shift"


def make_style_shift_items(families: int, family_size: int, seed: int, first_index: int, first_family: int) -> list[ItemSpec]:
    """Test-only families in the held-out palette and texture; ids continue after the in-style items."""
    return make_held_out_items(families, family_size, seed, HELD_OUT["palette"][0], HELD_OUT["texture"][0], first_index, first_family)


def write_styles_csv(path: Path, records, items_by_index: dict[int, ItemSpec]) -> None:
    """One row per image of every dataset: where it is, its item and its style factors."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["dataset", "image_name", "item_id", *STYLE_FACTORS, "framing"])
        for r in records:
            writer.writerow([r.layout, r.path, items_by_index[r.item_index].item_id, *(r.style[f] for f in STYLE_FACTORS), r.style["framing"]])


def read_styles_csv(path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))
