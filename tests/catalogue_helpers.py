"""A small shop with its own catalogue data, for the catalogue metadata and marketplace API tests:
a folder of photos (a shop photo and a customer photo of each synthetic item, one sub-folder per
item) and a CSV of the shop's labels and fields, with names the model never predicts."""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from fashionnet.data.readers import read_consumer2shop
from indexer.cli import main as indexer

# the shop's own category names: none is a category the model knows
SHOP_CATEGORIES = {"Tees": "Tops", "Jackets": "Tops", "Skirts": "Bottoms", "Trousers": "Bottoms"}
SHOP_ATTRIBUTE = "hand-stitched"


@dataclass
class Shop:
    photos: Path  # <photos>/<item>/<file>.jpg
    csv: Path
    index: Path
    category_of: dict[str, str]  # item -> the shop's category (items not listed have none)
    stitched: list[str]  # photos (relative to `photos`) the shop marks hand-stitched
    fields_of: dict[str, dict]  # photo (relative) -> its free fields, from its own row
    item_fields: dict[str, dict]  # item -> the free fields of its item row
    build_out: str = ""
    build_err: str = ""
    unmatched_keys: list[str] = field(default_factory=lambda: ["ghost/none.jpg", "no-such-item"])


def make_shop(synth_root: Path, folder: Path) -> dict[str, list[str]]:
    """Copy each shop item's shop photo and first customer photo into ``folder/<item>/``; returns
    item -> its photos relative to ``folder``, and item -> true category in ``make_shop.categories``."""
    root = synth_root / "consumer2shop"
    frame = read_consumer2shop(root)
    photos: dict[str, list[str]] = {}
    categories: dict[str, str] = {}
    for source in ("shop", "consumer"):
        rows = frame[frame["source"] == source].drop_duplicates("item_id")
        for image, item, category in zip(rows["image_path"], rows["item_id"], rows["category"]):
            (folder / item).mkdir(parents=True, exist_ok=True)
            name = f"{source}_{Path(image).name}"
            shutil.copy(root / image, folder / item / name)
            photos.setdefault(item, []).append(f"{item}/{name}")
            categories[item] = category
    make_shop.categories = categories
    return photos


def write_catalogue(path: Path, photos: dict[str, list[str]], categories: dict[str, str]) -> tuple[dict, list, dict, dict]:
    """The shop's CSV: an item row per item of a mapped category, photo rows for the first photo of
    every third item (attributes, title, price, seller), and two rows that match no photo."""
    category_of, stitched, fields_of, item_fields = {}, [], {}, {}
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "item_id", "category", "attributes", "title", "price", "seller"])
        for n, item in enumerate(sorted(photos)):
            if categories[item] in SHOP_CATEGORIES:
                category_of[item] = SHOP_CATEGORIES[categories[item]]
                item_fields[item] = {"title": f"Item {n}", "seller": "Acme, Ltd"}
                writer.writerow(["", item, category_of[item], "", f"Item {n}", "", "Acme, Ltd"])
            if n % 3 == 0:
                photo = photos[item][0]
                stitched.append(photo)
                fields_of[photo] = {"title": f"Photo {n}, front", "price": f"{10 + n}.50", "seller": "Acme, Ltd"}
                writer.writerow([photo, "", "", f"{SHAPE_WORD}|{SHOP_ATTRIBUTE}", fields_of[photo]["title"], fields_of[photo]["price"], "Acme, Ltd"])
        writer.writerow(["ghost/none.jpg", "", "Tops", "", "", "", ""])
        writer.writerow(["", "no-such-item", "Tops", "", "", "", ""])
    return category_of, stitched, fields_of, item_fields


SHAPE_WORD = "boxy"


def build_shop(synth_root: Path, checkpoint: Path, folder: Path, *more: str) -> Shop:
    """Photos, catalogue CSV and an index built from them with ``indexer build --metadata``."""
    photos = make_shop(synth_root, folder / "photos")
    category_of, stitched, fields_of, item_fields = write_catalogue(folder / "catalogue.csv", photos, make_shop.categories)
    shop = Shop(folder / "photos", folder / "catalogue.csv", folder / "idx", category_of, stitched, fields_of, item_fields)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = indexer(["build", "--checkpoint", str(checkpoint), "--images", str(shop.photos), "--metadata", str(shop.csv),
                        "--out", str(shop.index), "--workers", "0", "--no-progress", "--device", "cpu", *more])
    assert code == 0, err.getvalue()
    shop.build_out, shop.build_err = out.getvalue(), err.getvalue()
    return shop
