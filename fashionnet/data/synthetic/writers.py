"""Writing the synthetic benchmark: render every item and write the official list files.

:func:`generate_synthetic_deepfashion` renders the items (in worker processes when asked), writes
the In-shop, Consumer-to-shop and style-shift (Consumer-to-shop layout) annotation and partition
files and ``styles.csv`` into a temporary directory and renames it into place, so an interrupted
run never leaves half a dataset.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from fashionnet.data.synthetic.items import ItemSpec, describe_item, item_attributes, make_items
from fashionnet.data.synthetic.photos import RenderedImage
from fashionnet.data.synthetic.presentation import render_consumer_image, render_shop_image
from fashionnet.data.synthetic.scenes import readable_backgrounds
from fashionnet.data.synthetic.style_shift import HELD_OUT, LAYOUT, STYLES_FILE, make_style_shift_items, write_styles_csv
from fashionnet.data.synthetic.vocabulary import ATTRIBUTE_TYPES, ATTRIBUTES, CATEGORIES, SIZES, VIEW_CODES
from fashionnet.landmarks import CLOTHES_TYPE_SLOTS, NUM_LANDMARKS

GENERATOR_VERSION = 4  # 2: photographic domain randomisation and the style-shift split; 3: portraits; 4: clipped garments, clutter
MANIFEST_NAME = "SYNTHETIC.json"  # marks a directory this generator owns (safe to overwrite)


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
    style: dict  # presentation, scene, palette, texture, framing


def _record(layout: str, path: str, item: ItemSpec, code: int, r: RenderedImage, split: str) -> ImageRecord:
    ct = item.style.clothes_type
    triples = [(int(r.visibility[j]), int(r.landmarks[j, 0]), int(r.landmarks[j, 1])) for j in CLOTHES_TYPE_SLOTS[ct]]
    return ImageRecord(layout, path, item.index, ct, code, r.variation_type, r.bbox, triples, split, dict(r.style))


def _save_jpeg(img: Image.Image, path: Path, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=quality)


class RenderError(RuntimeError):
    """Rendering one item failed: a generator bug, named by item and seed so it can be reproduced."""


def _render_item(task) -> list[ImageRecord]:
    """Worker: render and save every image of one item; return their labels."""
    item, _spec, _root, seed, _backgrounds, held_out = task
    try:
        return _render_item_images(task)
    except Exception as exc:
        raise RenderError(f"rendering item {item.item_id} (index {item.index}, seed {seed}, held_out={held_out}) failed: {exc!r}") from exc


def _render_item_images(task) -> list[ImageRecord]:
    item, spec, root, seed, backgrounds, held_out = task
    root = Path(root)
    rng = np.random.default_rng([seed, 3, item.index])
    if held_out:
        return _render_pairs(item, rng, root, LAYOUT, spec.style_shift_shop, spec.style_shift_consumer, backgrounds, True)
    records: list[ImageRecord] = []
    # In-shop studio views: a front view and a random subset of the others.
    n_views = int(rng.integers(spec.inshop_views[0], spec.inshop_views[1] + 1))
    others = ["side", "back", "full", "additional"]
    chosen = ["front"] + [others[i] for i in sorted(rng.choice(len(others), size=min(len(others), n_views - 1), replace=False))]
    folder = f"img/{item.style.gender}/{item.style.category}/{item.item_id}"
    inshop: list[ImageRecord] = []
    for k, view in enumerate(chosen, start=1):
        r = render_shop_image(item, view, rng, backgrounds=backgrounds, plain=_plain(rng, spec.catalogue_share))
        rel = f"{folder}/{k:02d}_{VIEW_CODES[view]}_{view}.jpg"
        _save_jpeg(r.image, root / "inshop" / rel, r.jpeg_quality)
        inshop.append(_record("inshop", rel, item, VIEW_CODES[view], r, "train"))
    if item.split_inshop == "test":  # about half the images are queries; at least one of each
        order = rng.permutation(len(inshop))
        n_query = min(len(inshop) - 1, max(1, (len(inshop) + 1) // 2))
        for rank, i in enumerate(order):
            inshop[i].split = "query" if rank < n_query else "gallery"
    records += inshop
    records += _render_pairs(item, rng, root, "consumer2shop", spec.shop_images, spec.consumer_images, backgrounds, False, spec.catalogue_share)
    return records


def _plain(rng, share: float) -> bool:
    """Whether a photo is a plain catalogue shot; draws nothing when the size has none (keeps streams)."""
    return bool(share > 0 and rng.random() < share)


def _render_pairs(
    item: ItemSpec, rng, root: Path, layout: str, shop_range, consumer_range, backgrounds, held_out: bool, catalogue_share: float = 0.0
) -> list[ImageRecord]:
    """Consumer-to-shop layout: studio shots and consumer photos of the same item."""
    records = []
    folder = f"img/{item.category.group}/{item.style.category}/{item.item_id}"
    n_shop = int(rng.integers(shop_range[0], shop_range[1] + 1))
    for k in range(1, n_shop + 1):
        view = "front" if held_out or k == 1 or rng.random() < 0.5 else str(rng.choice(["side", "back"]))
        r = render_shop_image(item, view, rng, backgrounds=backgrounds, held_out=held_out, plain=_plain(rng, catalogue_share))
        rel = f"{folder}/shop_{k:02d}.jpg"
        _save_jpeg(r.image, root / layout / rel, r.jpeg_quality)
        records.append(_record(layout, rel, item, 1, r, item.split_c2s))
    n_consumer = int(rng.integers(consumer_range[0], consumer_range[1] + 1))
    for k in range(1, n_consumer + 1):
        r = render_consumer_image(item, rng, backgrounds=backgrounds, held_out=held_out, plain=_plain(rng, catalogue_share))
        rel = f"{folder}/comsumer_{k:02d}.jpg"  # sic: the real dataset spells it "comsumer"
        _save_jpeg(r.image, root / layout / rel, r.jpeg_quality)
        records.append(_record(layout, rel, item, 2, r, item.split_c2s))
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
    by_index = {it.index: it for it in items}
    rows = [f"{_pad(r.path, width)} {label[by_index[r.item_index].style.category]}" for r in records]
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
    by_index = {it.index: it for it in items}
    rows = [f"{_pad(r.path, width)} {by_index[r.item_index].item_id} {r.split}" for r in records]
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
    by_index = {it.index: it for it in items}
    for idx in sorted(by_item):  # one row per (consumer photo, shop photo) pair of an item
        shops, consumers = by_item[idx]
        for c in consumers:
            for s in shops:
                rows.append(f"{_pad(c.path, width)} {_pad(s.path, width)} {by_index[idx].item_id} {by_index[idx].split_c2s}")
    _table(ev / "list_eval_partition.txt", "image_pair_name_1 image_pair_name_2 item_id evaluation_status", rows)


def _manifest(items: list[ItemSpec], size: str, seed: int, counts: dict, held_out_items: list[ItemSpec], backgrounds) -> dict:
    return {
        "generator": "fashionnet.data.synthetic",
        "version": GENERATOR_VERSION,
        "size": size,
        "seed": seed,
        "items": len(items),
        "families": len({it.family for it in items}),
        "images": counts,
        "family_of_item": {it.item_id: it.family for it in items},
        # The style-shift split: test-only items and photos in style factors no in-style image has.
        "style_shift": {
            "layout": LAYOUT,
            "items": len(held_out_items),
            "families": len({it.family for it in held_out_items}),
            "family_of_item": {it.item_id: it.family for it in held_out_items},
        },
        "held_out_styles": {k: list(v) for k, v in HELD_OUT.items()},
        "styles_file": STYLES_FILE,
        "user_backgrounds": len(backgrounds),
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
    out_dir, size: str = "default", seed: int = 0, workers: int | None = None, progress: bool = True, backgrounds=None
) -> dict:
    """Write ``out_dir/inshop``, ``out_dir/consumer2shop`` and ``out_dir/style_shift`` (official
    DeepFashion layouts; style_shift is a Consumer-to-shop test set, see :mod:`.style_shift`) and
    ``out_dir/styles.csv``. ``backgrounds``: a folder of the user's own background photos mixed
    into the scenes (unreadable files are skipped with a warning naming each; none readable is an error).

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
    user_photos = readable_backgrounds(backgrounds) if backgrounds is not None else ()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    start = time.perf_counter()
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    try:
        items = make_items(spec, seed)
        held_out_items = make_style_shift_items(spec.style_shift_families, spec.family_size, seed, len(items), spec.families)
        tasks = [(it, spec, str(tmp), seed, user_photos, False) for it in items]
        tasks += [(it, spec, str(tmp), seed, user_photos, True) for it in held_out_items]
        bar = tqdm(total=len(tasks), desc=f"synthetic DeepFashion ({size})", unit="item", disable=not progress)
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
        shifted = [r for r in records if r.layout == LAYOUT]
        _write_inshop(tmp / "inshop", items, inshop)
        _write_consumer2shop(tmp / "consumer2shop", items, c2s)
        if shifted:
            _write_consumer2shop(tmp / LAYOUT, held_out_items, shifted)
        write_styles_csv(tmp / STYLES_FILE, records, {it.index: it for it in items + held_out_items})
        counts = {
            "inshop": len(inshop),
            "consumer2shop_shop": sum(r.code == 1 for r in c2s),
            "consumer2shop_consumer": sum(r.code == 2 for r in c2s),
            "style_shift_shop": sum(r.code == 1 for r in shifted),
            "style_shift_consumer": sum(r.code == 2 for r in shifted),
        }
        with open(tmp / MANIFEST_NAME, "w", encoding="utf-8", newline="\n") as fh:
            json.dump(_manifest(items, size, seed, counts, held_out_items, user_photos), fh, indent=1)
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
