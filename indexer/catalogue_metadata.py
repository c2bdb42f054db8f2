"""A shop's own data about its photos: category, clothes type, attributes and free fields (title,
price, seller, ...), read from ``indexer build/add --metadata FILE`` or taken with an API add.

The file is a CSV with a header row, or JSON Lines (one object per line, ``.jsonl``). Each row is
keyed by one column:

- ``image``: a photo's path relative to a folder given to ``--images`` / ``indexer add`` (or to
  ``--data-root``), e.g. ``sku-42/front.jpg``; an absolute path works too. The row is that photo's.
- ``item_id``: the item's id (its sub-folder's name); the row applies to every photo of the item.
  An ``image`` row beats an ``item_id`` row, field by field.

Then, all optional: ``category`` (any text: the shop's own names), ``clothes_type`` (1, 2, 3, upper,
lower or full), ``attributes`` (names separated by ``|`` or ``,``; a list in JSON Lines), and any
other column, kept as a free field and returned with each result. Empty CSV cells are "not given".

Stored per image in the index's metadata table: ``category`` and ``clothes_type`` (where DeepFashion
annotations go too), ``catalogue_attributes`` and ``catalogue_fields`` (a JSON object). Filters
read these where a row has them and the model's prediction elsewhere (:func:`label_source`).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from indexer.embedding import ATTRIBUTE_SEPARATOR
from indexer.filter_values import parse_clothes_type

KEYS = ("image", "item_id")
LABELS = ("category", "clothes_type", "attributes")
ATTRIBUTES_COLUMN = "catalogue_attributes"
FIELDS_COLUMN = "catalogue_fields"
# index metadata columns a catalogue sets; clothes_type is nullable Int64, the others text
STORED = ("category", "clothes_type", ATTRIBUTES_COLUMN, FIELDS_COLUMN)
FORMATS = (".csv", ".jsonl")
SHOWN_UNMATCHED = 20


class CatalogueFileError(ValueError):
    """A metadata file that cannot be used; the message names the file, the line and the problem."""


@dataclass
class CatalogueRow:
    line: int  # in the file (1: a CSV's header)
    image: Optional[str]
    item_id: Optional[str]
    values: dict[str, Any]  # stored column -> value, only those given


@dataclass
class Catalogue:
    """A metadata file's rows, checked; ``source`` names it in messages."""

    source: str
    rows: list[CatalogueRow] = field(default_factory=list)


@dataclass
class Applied:
    """What :func:`apply_catalogue` did: photos given values, and rows that matched no photo."""

    matched_photos: int = 0
    unmatched: list[tuple[int, str, str]] = field(default_factory=list)  # (line, key, problem)

    def describe(self, source: str) -> list[str]:
        lines = [f"{source}, line {line}: {key}: {problem}" for line, key, problem in self.unmatched[:SHOWN_UNMATCHED]]
        if len(self.unmatched) > SHOWN_UNMATCHED:
            lines.append(f"... and {len(self.unmatched) - SHOWN_UNMATCHED} more rows of {source} that match no photo")
        return lines


# ----------------------------------------------------------------------------- reading files

def read_catalogue(path: str | os.PathLike) -> Catalogue:
    """Read and check a metadata file (CSV or JSON Lines); CatalogueFileError naming line and problem."""
    path = Path(path)
    name = str(path)
    if path.suffix.lower() not in FORMATS:
        raise CatalogueFileError(f"{name}: a metadata file must be .csv or .jsonl")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise CatalogueFileError(f"{name}: no such file") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise CatalogueFileError(f"{name}, line {line}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise CatalogueFileError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    records = _csv_records(text, name) if path.suffix.lower() == ".csv" else _jsonl_records(text, name)
    catalogue = Catalogue(name, [row_of(record, f"{name}, line {line}", line) for line, record in records])
    if not catalogue.rows:
        raise CatalogueFileError(f"{name}: holds no rows")
    seen: dict[tuple[str, str], int] = {}
    for row in catalogue.rows:
        key = ("image", _norm(row.image)) if row.image else ("item_id", str(row.item_id))
        if key in seen:
            raise CatalogueFileError(f"{name}, line {row.line}: {key[0]} {key[1]!r} is given again (first on line {seen[key]})")
        seen[key] = row.line
    return catalogue


def _csv_records(text: str, name: str) -> list[tuple[int, dict]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise CatalogueFileError(f"{name}, line 1: no header row (expected column names, e.g. image,category,title,price)")
        header = [h.strip() for h in header]
        blank = [i + 1 for i, h in enumerate(header) if not h]
        if blank:
            raise CatalogueFileError(f"{name}, line 1: column {blank[0]} has no name")
        repeated = sorted({h for h in header if header.count(h) > 1})
        if repeated:
            raise CatalogueFileError(f"{name}, line 1: column {repeated[0]!r} appears twice")
        if not set(KEYS) & set(header):
            raise CatalogueFileError(f"{name}, line 1: no key column; name each row's photo in an 'image' column "
                                     "or its item in an 'item_id' column")
        records = []
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(header):
                raise CatalogueFileError(f"{name}, line {line}: {len(cells)} cells for {len(header)} columns "
                                         "(quote a value that holds a comma)")
            records.append((line, {h: c.strip() for h, c in zip(header, cells) if c.strip() != ""}))
    except csv.Error as exc:
        raise CatalogueFileError(f"{name}, line {reader.line_num}: not valid CSV ({exc})") from None
    return records


def _jsonl_records(text: str, name: str) -> list[tuple[int, dict]]:
    records = []
    for line, content in enumerate(text.splitlines(), start=1):
        if not content.strip():
            continue
        try:
            record = json.loads(content)
        except json.JSONDecodeError as exc:
            raise CatalogueFileError(f"{name}, line {line}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(record, dict):
            raise CatalogueFileError(f"{name}, line {line}: expected a JSON object, got {type(record).__name__}")
        records.append((line, {k: v for k, v in record.items() if v is not None and v != ""}))
    return records


def row_of(record: dict, where: str, line: int = 0) -> CatalogueRow:
    """One record (column -> value) checked: its key, labels and free fields; errors start with ``where``."""
    image, item_id = record.get("image"), record.get("item_id")
    for key, value in (("image", image), ("item_id", item_id)):
        if value is not None and not isinstance(value, (str, int)):
            raise CatalogueFileError(f"{where}: {key} must be text, got {type(value).__name__}")
    if image is None and item_id is None:
        raise CatalogueFileError(f"{where}: no key: give the photo in 'image' or the item in 'item_id'")
    return CatalogueRow(line, str(image) if image is not None else None, str(item_id) if item_id is not None else None,
                        stored_values(record, where))


def stored_values(record: dict, where: str) -> dict[str, Any]:
    """The index columns a record sets: its labels, checked, and its free fields as one JSON object."""
    values: dict[str, Any] = {}
    if record.get("category") is not None:
        if not isinstance(record["category"], (str, int)):
            raise CatalogueFileError(f"{where}: category must be text, got {type(record['category']).__name__}")
        values["category"] = str(record["category"]).strip()
    if record.get("clothes_type") is not None:
        try:
            values["clothes_type"] = parse_clothes_type(record["clothes_type"])
        except ValueError as exc:
            raise CatalogueFileError(f"{where}: {exc}") from None
    if record.get("attributes") is not None:
        values[ATTRIBUTES_COLUMN] = ATTRIBUTE_SEPARATOR.join(attribute_names(record["attributes"], where))
    free = {k: v for k, v in record.items() if k not in KEYS + LABELS}
    if free:
        try:
            values[FIELDS_COLUMN] = json.dumps(free, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise CatalogueFileError(f"{where}: a free field cannot be stored as JSON ({exc})") from None
    return {k: v for k, v in values.items() if v is not None and v != ""}


def attribute_names(value, where: str) -> list[str]:
    """Attribute names from "a|b", "a,b" or ["a", "b"], lower case (as filters compare them)."""
    if isinstance(value, str):
        parts = value.replace(",", ATTRIBUTE_SEPARATOR).split(ATTRIBUTE_SEPARATOR)
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        parts = value
    else:
        raise CatalogueFileError(f"{where}: attributes must be names separated by '|' or ',' (or a list of names)")
    return [p.strip().lower() for p in parts if p.strip()]


# ----------------------------------------------------------------------------- matching photos

def _norm(key: str) -> str:
    text = str(key).strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return os.path.normpath(text).replace("\\", "/") if text else text


def photo_keys(image_paths: Sequence[str], bases: Iterable[str | os.PathLike]) -> dict[str, int]:
    """key -> position: each photo's absolute path, and its path relative to each base folder it is
    under (the first base that claims a key keeps it)."""
    keys: dict[str, int] = {}
    bases = [Path(b).absolute() for b in bases]
    for position, path in enumerate(image_paths):
        absolute = Path(path).absolute()
        keys.setdefault(_norm(str(absolute)), position)
        keys.setdefault(_norm(str(absolute.resolve())), position)
        for base in bases:
            for root in (base, base.resolve()):
                try:
                    keys.setdefault(_norm(absolute.relative_to(root).as_posix()), position)
                    break
                except ValueError:
                    continue
    return keys


def apply_catalogue(catalogue: Catalogue, photos: pd.DataFrame, bases: Iterable[str | os.PathLike]) -> tuple[pd.DataFrame, Applied]:
    """``photos`` (image_path, item_id, ...) with the catalogue's values set where a row matches;
    rows that match no photo are reported in :class:`Applied`, not raised."""
    photos = with_stored_columns(photos.reset_index(drop=True))
    keys = photo_keys(photos["image_path"].astype(str).tolist(), bases)
    items = photos["item_id"].astype(str).to_numpy()
    applied = Applied()
    touched = np.zeros(len(photos), dtype=bool)
    for row in sorted(catalogue.rows, key=lambda r: r.image is not None):  # item rows first, photo rows override
        if row.image is not None:
            key = _norm(row.image)
            position = keys.get(key) if not os.path.isabs(key) else keys.get(_norm(str(Path(key).resolve())), keys.get(key))
            if position is None:
                applied.unmatched.append((row.line, row.image, "no such photo in this build or add"))
                continue
            if row.item_id is not None and row.item_id != items[position]:
                applied.unmatched.append((row.line, row.image, f"the photo belongs to item {items[position]!r}, not {row.item_id!r}"))
                continue
            positions = np.array([position])
        else:
            positions = np.flatnonzero(items == row.item_id)
            if len(positions) == 0:
                applied.unmatched.append((row.line, row.item_id, "no photo of this item in this build or add"))
                continue
        set_values(photos, positions, row.values)
        touched[positions] = True
    applied.matched_photos = int(touched.sum())
    return photos, applied


def with_stored_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every catalogue column present, in the dtypes the index stores."""
    frame = frame.copy()
    for column in STORED:
        if column not in frame:
            frame[column] = None
    frame["clothes_type"] = pd.array([None if pd.isna(v) else int(v) for v in frame["clothes_type"]], dtype="Int64")
    for column in ("category", ATTRIBUTES_COLUMN, FIELDS_COLUMN):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


def set_values(frame: pd.DataFrame, positions: np.ndarray, values: dict[str, Any]) -> None:
    """Set stored columns at ``positions``; free fields merge key by key with those already set."""
    for column, value in values.items():
        where = frame.columns.get_loc(column)
        if column == FIELDS_COLUMN:
            for position in positions:
                merged = {**fields_of(frame.iat[position, where]), **json.loads(value)}
                frame.iat[position, where] = json.dumps(merged, ensure_ascii=False)
        else:
            frame.iloc[positions, where] = value


def inherit_item_values(rows: pd.DataFrame, indexed: pd.DataFrame) -> pd.DataFrame:
    """New photos of an item already in the index take the item's catalogue values where their own
    are not given (a photo added later keeps the item's category, title, price...)."""
    rows = with_stored_columns(rows)
    if "item_id" not in indexed or not len(indexed):
        return rows
    present = [c for c in STORED if c in indexed]
    if not present:
        return rows
    last = indexed.assign(item_id=indexed["item_id"].astype(str)).groupby("item_id")[present].last()
    for column in present:
        known = rows["item_id"].astype(str).map(last[column])
        missing = rows[column].isna()
        if column == "clothes_type":
            rows[column] = rows[column].where(~missing, pd.array(known, dtype="Int64"))
        else:
            rows[column] = rows[column].where(~missing, known.where(known.notna(), None))
    return rows


# ----------------------------------------------------------------------------- reading it back

def fields_of(value) -> dict:
    """The free fields stored for one image (an empty dict for none)."""
    if isinstance(value, str) and value:
        try:
            found = json.loads(value)
        except json.JSONDecodeError:
            return {}
        return found if isinstance(found, dict) else {}
    return {}


def label_source(own, predicted) -> Optional[str]:
    """Which a filter read for one image: "catalogue" (the shop's label or an annotation), else
    "predicted" (the model's), else None."""
    if not _missing(own):
        return "catalogue"
    return None if _missing(predicted) else "predicted"


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def patch_values(current: dict, patch: dict) -> dict:
    """JSON merge patch of free fields: a key set to null is removed, others replaced."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def update_item(index_dir: str | os.PathLike, item_id: str, values: dict[str, Any], fields_patch: Optional[dict] = None) -> int:
    """Set stored columns (``values``; None clears one) on every image of ``item_id`` in the saved
    index, and merge ``fields_patch`` into their free fields, under the writer lock; returns how many
    images changed (0 when the index has no such item)."""
    from indexer.updates import locked_update

    with locked_update(index_dir, device="cpu") as index:
        gallery = index.metadata
        ids = gallery.index[gallery["item_id"].astype(str) == str(item_id)].to_numpy(np.int64)
        if len(ids) == 0:
            return 0
        columns = {column: [value] * len(ids) for column, value in values.items()}
        if fields_patch is not None:
            current = gallery.loc[ids, FIELDS_COLUMN] if FIELDS_COLUMN in gallery else [None] * len(ids)
            merged = [patch_values(fields_of(value), fields_patch) for value in current]
            columns[FIELDS_COLUMN] = [json.dumps(m, ensure_ascii=False) if m else None for m in merged]
        if columns:
            index.set_metadata(ids, columns)
        return len(ids)
