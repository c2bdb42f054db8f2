"""Parsers of the individual DeepFashion annotation files: landmarks, bounding boxes, item lists,
attributes, categories and In-shop descriptions.

Each parser checks the values of its file (clothes types, visibility codes, label ranges, repeated
images) and raises :class:`~fashionnet.data.listfiles.AnnotationError` naming the file and line;
the file format itself is read by :mod:`fashionnet.data.listfiles`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from fashionnet.data import schema
from fashionnet.data.listfiles import (
    AnnotationError,
    PathLike,
    _check_unique_images,
    _check_width,
    _numbers,
    _read_records,
    _read_table,
    _read_text,
    _Records,
    _row_error,
    _Table,
)
from fashionnet.landmarks import ABSENT, CLOTHES_TYPE_NAMES, CLOTHES_TYPE_SLOTS, NUM_LANDMARKS

_ATTRIBUTE_LABELS = (-1, 0, 1)  # absent, unknown, present


def _clothes_types(table: _Table, column: int) -> np.ndarray:
    types = _numbers(table, [column], "clothes_type", integer=True)[:, 0].astype(np.int64)
    unknown = np.flatnonzero(~np.isin(types, list(CLOTHES_TYPE_SLOTS)))
    if unknown.size:
        i = int(unknown[0])
        raise table.error(i, f"unknown clothes_type {table.tokens(i)[column]!r} (expected 1 upper-body, 2 lower-body or 3 full-body)")
    return types


_LANDMARK_FORMAT = "image_name clothes_type variation_type, then visibility x y per landmark"
_LANDMARK_WIDTH = 3 + 3 * NUM_LANDMARKS


def _read_landmark_table(path: Path, required: bool) -> Optional[_Table]:
    return _read_table(path, _LANDMARK_WIDTH, (0,), f"at most {_LANDMARK_WIDTH} values ({_LANDMARK_FORMAT})", required=required)


def _parse_landmarks(table: _Table) -> pd.DataFrame:
    """Variable-length landmark rows -> frame indexed by image with the schema's 8 slots.

    Triples go, in file order, to the slots CLOTHES_TYPE_SLOTS gives for the row's clothes type;
    every triple is kept whatever its visibility, so later slots never shift.
    """
    n = len(table)
    counts = table.value_counts()
    short = np.flatnonzero(counts < 3)
    if short.size:
        raise _row_error(table, int(short[0]), 3, f"at least 3 values ({_LANDMARK_FORMAT})")
    types = _clothes_types(table, 1)
    variation = _numbers(table, [2], "variation_type", integer=True)[:, 0]
    landmark_count = {t: len(slots) for t, slots in CLOTHES_TYPE_SLOTS.items()}
    wanted = np.array([3 + 3 * landmark_count[int(t)] for t in types], dtype=np.int64)
    bad = np.flatnonzero(counts != wanted)
    if bad.size:
        i = int(bad[0])
        t, k = int(types[i]), landmark_count[int(types[i])]
        raise _row_error(table, i, int(wanted[i]), f"3 + {3 * k} = {wanted[i]} values (clothes_type {t}, {CLOTHES_TYPE_NAMES[t]}-body, has {k} landmarks)")
    xs = np.full((n, NUM_LANDMARKS), np.nan)
    ys = np.full((n, NUM_LANDMARKS), np.nan)
    vis = np.full((n, NUM_LANDMARKS), ABSENT, dtype=np.int64)
    for clothes_type, slots in CLOTHES_TYPE_SLOTS.items():
        rows = np.flatnonzero(types == clothes_type)
        if not rows.size:
            continue
        k = len(slots)
        values = _numbers(table, list(range(3, 3 + 3 * k)), "landmark", rows=rows).reshape(len(rows), k, 3)
        visibility = values[:, :, 0]
        outside = ~np.isin(visibility, (0, 1, 2))
        if outside.any():
            r, j = (int(v) for v in np.argwhere(outside)[0])
            token = table.tokens(int(rows[r]))[3 + 3 * j]
            raise table.error(int(rows[r]), f"landmark_visibility_{j + 1} is {token!r}; expected 0 visible, 1 occluded or 2 truncated")
        slot_index = np.asarray(slots)
        vis[rows[:, None], slot_index] = visibility.astype(np.int64)
        xs[rows[:, None], slot_index] = values[:, :, 1]
        ys[rows[:, None], slot_index] = values[:, :, 2]
    images = table.texts(0)
    keep = _check_unique_images(table, images)
    frame = pd.DataFrame(
        {
            "lm_clothes_type": types,
            "lm_variation_type": variation.astype(np.int64),
            **{c: xs[:, j] for j, c in enumerate(schema.LANDMARK_X_COLUMNS)},
            **{c: ys[:, j] for j, c in enumerate(schema.LANDMARK_Y_COLUMNS)},
            **{c: vis[:, j] for j, c in enumerate(schema.LANDMARK_VIS_COLUMNS)},
            "lm_record": np.arange(n),
        },
        index=pd.Index(images, name="image_path"),
    )
    return frame[keep]


def _bbox_names(type_column: Optional[str]) -> tuple[str, ...]:
    if type_column is None:
        return ("image_name", "x_1", "y_1", "x_2", "y_2")
    return ("image_name", "clothes_type", type_column, "x_1", "y_1", "x_2", "y_2")


def _read_bbox_table(path: Path, type_column: Optional[str], required: bool) -> Optional[_Table]:
    names = _bbox_names(type_column)
    return _read_table(path, len(names), (0,), f"{len(names)} values ({' '.join(names)})", required=required)


def _parse_bboxes(table: _Table, type_column: Optional[str]) -> pd.DataFrame:
    """Bounding-box file -> frame indexed by image (``bbox_*``, and the clothes/second type when present).

    ``type_column`` is the name of the second code column (``pose_type`` In-shop, ``source_type``
    Consumer-to-shop) or None for FLD's ``image_name x_1 y_1 x_2 y_2``.
    """
    names = _bbox_names(type_column)
    _check_width(table, len(names), f"{len(names)} values ({' '.join(names)})")
    first_coordinate = len(names) - 4
    box = _numbers(table, list(range(first_coordinate, len(names))), "bbox location")
    data = {c: box[:, j] for j, c in enumerate(schema.BBOX_COLUMNS)}
    if type_column is not None:
        data["bbox_clothes_type"] = _clothes_types(table, 1)
        data[type_column] = _numbers(table, [2], type_column, integer=True)[:, 0].astype(np.int64)
    data["bbox_record"] = np.arange(len(table))
    images = table.texts(0)
    keep = _check_unique_images(table, images)
    return pd.DataFrame(data, index=pd.Index(images, name="image_path"))[keep]


def _read_item_ids(path: Path) -> Optional[_Table]:
    """``list_item_*.txt``: a count line then one item id a line (no header)."""
    table = _read_table(path, 1, (0,), "one item id", has_header=False, required=False)
    if table is not None:
        _check_width(table, 1, "one item id")
    return table


def _check_items_listed(partition: _Table, items: np.ndarray, rows: np.ndarray, item_table: Optional[_Table]) -> None:
    if item_table is None:
        return
    unknown = np.flatnonzero(~pd.Series(items, dtype=object).isin(set(item_table.texts(0))).to_numpy())
    if unknown.size:
        i = int(unknown[0])
        raise partition.error(int(rows[i]), f"item {items[i]} is not listed in {item_table.path}")


def _attribute_names_from(records: _Records) -> tuple[list[str], list[str]]:
    """Names and type tokens of ``list_attr_cloth.txt``.

    Names may contain spaces (and Consumer-to-shop puts a Chinese and an English name side by side),
    so when the header announces an ``attribute_type`` column the LAST token is the type and the rest
    is the name; a name-only header makes the whole line the name.
    """
    typed = len(records.header) >= 2 and records.header[-1].lower().endswith("type")
    names, types = [], []
    for i, tokens in enumerate(records.records):
        if typed:
            if len(tokens) < 2:
                raise records.error(i, f"expected an attribute name followed by its type, found {' '.join(tokens)!r}")
            names.append(" ".join(tokens[:-1]))
            types.append(tokens[-1])
        else:
            names.append(" ".join(tokens))
            types.append("")
    return names, types


def read_attribute_table(root: PathLike) -> pd.DataFrame:
    """Attributes of a benchmark root: one row per attribute, columns ``name``, ``type``, ``type_name``.

    ``type`` is the raw type token of ``Anno/list_attr_cloth.txt`` ("" where the file has none);
    ``type_name`` resolves a 1-based numeric type through ``Anno/list_attr_type.txt`` when that
    file exists (Consumer-to-shop), else equals ``type``.
    """
    anno = Path(root) / "Anno"
    records = _read_records(anno / "list_attr_cloth.txt")
    names, types = _attribute_names_from(records)
    type_names = list(types)
    type_file = _read_records(anno / "list_attr_type.txt", required=False)
    if type_file is not None:
        known = [" ".join(tokens) for tokens in type_file.records]
        for i, token in enumerate(types):
            if token.isdigit():
                if not 1 <= int(token) <= len(known):
                    raise records.error(i, f"attribute type {token} is not in {type_file.path} ({len(known)} types)")
                type_names[i] = known[int(token) - 1]
    return pd.DataFrame({"name": names, "type": types, "type_name": type_names})


def read_attribute_names(root: PathLike) -> list[str]:
    """Attribute names in label order, from ``Anno/list_attr_cloth.txt``."""
    return read_attribute_table(root)["name"].tolist()


def _read_item_attributes(anno: Path) -> Optional[dict[str, np.ndarray]]:
    """``list_attr_items.txt`` -> {item_id: int8 array of {1, -1, 0}}, or None when absent."""
    cloth_path, items_path = anno / "list_attr_cloth.txt", anno / "list_attr_items.txt"
    if not cloth_path.is_file() and not items_path.is_file():
        return None
    # One without the other is a broken download; the readers below name the missing file.
    num_attributes = len(read_attribute_names(anno.parent))
    row_format = f"item_id then {num_attributes} attribute labels (one per attribute of {cloth_path.name})"
    table = _read_table(items_path, 1 + num_attributes, (0,), row_format)
    _check_width(table, 1 + num_attributes, row_format)
    labels = _numbers(table, list(range(1, 1 + num_attributes)), "attribute label", integer=True)
    outside = ~np.isin(labels, _ATTRIBUTE_LABELS)
    if outside.any():
        r, k = (int(v) for v in np.argwhere(outside)[0])
        raise table.error(r, f"attribute label {k + 1} is {table.tokens(r)[k + 1]!r}; expected 1 present, -1 absent or 0 unknown")
    items = table.texts(0)
    keep = _check_unique_images(table, items)
    matrix = labels.astype(np.int8)
    return {items[i]: matrix[i] for i in np.flatnonzero(keep)}


def _read_category_files(anno: Path) -> Optional[pd.Series]:
    """Optional ``list_category_cloth.txt`` + ``list_category_img.txt`` -> image -> category name."""
    cloth_path, img_path = anno / "list_category_cloth.txt", anno / "list_category_img.txt"
    if not cloth_path.is_file() and not img_path.is_file():
        return None
    cloth = _read_records(cloth_path)
    # "category_name category_type": the last token is the type, the rest the name.
    names = [" ".join(t[:-1]) if len(t) > 1 else t[0] for t in cloth.records]
    table = _read_table(img_path, 2, (0,), "2 values (image_name category_label)")
    _check_width(table, 2, "2 values (image_name category_label)")
    labels = _numbers(table, [1], "category_label", integer=True)[:, 0].astype(np.int64)
    outside = np.flatnonzero((labels < 1) | (labels > len(names)))
    if outside.size:
        i = int(outside[0])
        raise table.error(i, f"category_label {labels[i]} is not between 1 and {len(names)} (the categories of {cloth_path.name})")
    return pd.Series(np.asarray(names, dtype=object)[labels - 1], index=table.texts(0), dtype=object)


def read_descriptions(root: PathLike) -> pd.DataFrame:
    """In-shop ``Anno/list_description_inshop.json`` -> frame ``item_id``, ``color``, ``description`` (list of str).

    Returns an empty frame when the file is absent (it is optional).
    """
    path = Path(root) / "Anno" / "list_description_inshop.json"
    columns = ["item_id", "color", "description"]
    if not path.is_file():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    try:
        entries = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise AnnotationError(path, exc.lineno, f"not valid JSON: {exc.msg}") from None
    if not isinstance(entries, list):
        raise AnnotationError(path, None, "expected a JSON list of {item, color, description} objects")
    rows = []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or "item" not in entry:
            raise AnnotationError(path, None, f"entry {k} is not an object with an 'item' key")
        description = entry.get("description", [])
        if isinstance(description, str):
            description = [description]
        rows.append((str(entry["item"]), str(entry.get("color", "")), [str(d) for d in description]))
    return pd.DataFrame(rows, columns=columns).astype({"item_id": "string", "color": "string"})
