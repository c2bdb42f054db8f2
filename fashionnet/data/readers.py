"""Readers for the DeepFashion annotation files of three benchmarks.

Each reader turns one benchmark root (the folder holding ``img/``, ``Anno/`` and ``Eval/``) into ONE
pandas frame in the schema of :mod:`fashionnet.data.schema`, one row per image of the evaluation
partition:

* :func:`read_inshop` - In-shop Clothes Retrieval,
* :func:`read_consumer2shop` - Consumer-to-shop Clothes Retrieval,
* :func:`read_fld` - Fashion Landmark Detection (FLD).

File formats are the official ones (see /work/shared/REFERENCE.md): a count line, a header line
(``list_item_*`` has none), then whitespace-separated records. Every problem found in a file raises
:class:`AnnotationError` with the file and the 1-based line, because a silent mis-parse of these
files (shifted landmark slots, clothes type read as a coordinate) poisons everything trained on them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from fashionnet.data import schema
from fashionnet.landmarks import ABSENT, CLOTHES_TYPE_NAMES, CLOTHES_TYPE_SLOTS, NUM_LANDMARKS

PathLike = Union[str, os.PathLike]

BENCHMARKS = ("inshop", "consumer2shop", "fld")

# Files whose presence identifies a benchmark root (any one is enough).
_MARKER_FILES = {
    "inshop": ("Anno/list_bbox_inshop.txt", "Anno/list_landmarks_inshop.txt", "Anno/list_item_inshop.txt"),
    "consumer2shop": (
        "Anno/list_bbox_consumer2shop.txt",
        "Anno/list_landmarks_consumer2shop.txt",
        "Anno/list_item_consumer2shop.txt",
    ),
    "fld": ("Anno/list_landmarks.txt",),
}

_SOURCE_TYPES = {1: "shop", 2: "consumer"}  # source_type codes of list_bbox_consumer2shop.txt
_ATTRIBUTE_LABELS = (-1, 0, 1)  # absent, unknown, present
_PROGRESS_MIN_ROWS = 2000  # no progress bar for loops shorter than this


class AnnotationError(ValueError):
    """A DeepFashion annotation file (or an image it lists) is unusable.

    ``path`` is the annotation file, ``line`` the 1-based line in it (None when the problem is the
    whole file), and the message reads ``"PATH:LINE: problem"``.
    """

    def __init__(self, path: PathLike, line: Optional[int], problem: str):
        self.path = str(path)
        self.line = None if line is None else int(line)
        self.problem = problem
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        super().__init__(f"{where}: {problem}")


# --------------------------------------------------------------------------------------------
# Generic list-file parsing
# --------------------------------------------------------------------------------------------


@dataclass
class _Preamble:
    """The count line and header line of a list file, and its text."""

    path: Path
    text: str
    header: list[str]
    first_line: int  # 1-based file line of the first record
    count: int


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # The Consumer-to-shop attribute files hold Chinese names; older copies are GB-encoded.
        text = data.decode("gb18030", errors="replace")
    return text.lstrip("\ufeff")


def _looks_like_record(tokens: list[str]) -> bool:
    """True when a supposed header line is really data (an image path or a number)."""
    first = tokens[0]
    if "/" in first or first.lower().endswith((".jpg", ".jpeg", ".png")):
        return True
    try:
        float(first)
        return True
    except ValueError:
        return False


def _read_preamble(path: Path, has_header: bool, required: bool) -> Optional[_Preamble]:
    """Check the count line (line 1) and the header line (line 2, when the file has one)."""
    if not path.is_file():
        if required:
            raise AnnotationError(path, None, f"required annotation file {path.name} is missing")
        return None
    text = _read_text(path)
    head = text.split("\n", 2)
    count_line = head[0].strip()
    if not count_line.isdigit():
        raise AnnotationError(path, 1, f"expected the number of records on the first line, found {count_line!r}")
    header: list[str] = []
    if has_header:
        header = head[1].split() if len(head) > 1 else []
        if not header:
            raise AnnotationError(path, 2, "expected the header line (column names) on line 2")
        if _looks_like_record(header):
            raise AnnotationError(path, 2, f"expected the header line (column names) on line 2, found a record: {head[1].strip()!r}")
    return _Preamble(path, text, header, 3 if has_header else 2, int(count_line))


def _check_count(pre: _Preamble, found: int) -> None:
    if found != pre.count:
        raise AnnotationError(pre.path, 1, f"the count line says {pre.count} records but the file has {found}")


@dataclass
class _Table:
    """The records of one list file as a frame (columns 0..width-1, NaN past the end of a short
    row), with the file line of every record for error messages."""

    path: Path
    header: list[str]
    frame: pd.DataFrame
    lines: np.ndarray  # (N,) 1-based file line of each record
    text: str
    _file_lines: Optional[list[str]] = None

    def __len__(self) -> int:
        return len(self.frame)

    def error(self, row: int, problem: str) -> AnnotationError:
        return AnnotationError(self.path, int(self.lines[row]), problem)

    def tokens(self, row: int) -> list[str]:
        """The raw tokens of a record; only used to describe an error."""
        if self._file_lines is None:
            self._file_lines = self.text.split("\n")
        return self._file_lines[int(self.lines[row]) - 1].split()

    def texts(self, column: int) -> np.ndarray:
        return self.frame[column].to_numpy(dtype=object)

    def value_counts(self) -> np.ndarray:
        return self.frame.notna().sum(axis=1).to_numpy()


def _read_table(path: Path, width: int, text_columns: tuple[int, ...], row_format: str, *, has_header: bool = True, required: bool = True) -> Optional[_Table]:
    """Parse a list file whose records have at most ``width`` whitespace-separated values.

    pandas' C parser does the bulk work (the real files have up to 240k rows); blank lines are
    kept as empty rows while parsing so every record keeps its file line number.
    """
    pre = _read_preamble(path, has_header, required)
    if pre is None:
        return None
    parts = pre.text.split("\n", pre.first_line - 1)
    body = parts[-1] if len(parts) == pre.first_line else ""
    with warnings.catch_warnings():
        # index_col=False + this warning as an error: rows longer than `width` must fail loudly,
        # never become an index or be cut short.
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            frame = pd.read_csv(
                io.StringIO(body),
                sep=r"\s+",
                header=None,
                names=range(width),
                index_col=False,
                dtype={c: str for c in text_columns},
                quoting=csv.QUOTE_NONE,
                skip_blank_lines=False,
                low_memory=False,
            )
        except pd.errors.EmptyDataError:
            frame = pd.DataFrame({c: pd.Series(dtype=object) for c in range(width)})
        except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
            for number, line in enumerate(body.split("\n"), start=pre.first_line):
                if len(line.split()) > width:
                    raise AnnotationError(path, number, f"expected {row_format}, found {len(line.split())} values") from None
            raise AnnotationError(path, None, f"cannot parse the file: {exc}") from None
    numbers = np.arange(len(frame), dtype=np.int64) + pre.first_line
    blank = frame.isna().all(axis=1).to_numpy()
    if blank.any():
        frame = frame[~blank].reset_index(drop=True)
        numbers = numbers[~blank]
    _check_count(pre, len(frame))
    return _Table(path, pre.header, frame, numbers, pre.text)


def _row_error(table: _Table, row: int, expected: int, row_format: str) -> AnnotationError:
    """Describe a record whose number of values is wrong."""
    tokens = table.tokens(row)
    if len(tokens) != expected:
        return table.error(row, f"expected {row_format}, found {len(tokens)} values")
    # Right length: pandas read one of the tokens ("nan", "NA", ...) as a missing value.
    missing = np.flatnonzero(table.frame.iloc[row].isna().to_numpy()[: len(tokens)])
    k = int(missing[0]) if missing.size else 0
    return table.error(row, f"value {k + 1} {tokens[k]!r} is not a usable value")


def _check_width(table: _Table, expected, row_format: str) -> None:
    """Every record must have exactly ``expected`` values (an int, or one per record)."""
    counts = table.value_counts()
    expected = np.broadcast_to(np.asarray(expected), counts.shape)
    bad = np.flatnonzero(counts != expected)
    if bad.size:
        i = int(bad[0])
        raise _row_error(table, i, int(expected[i]), row_format)


class AnnotationWarning(UserWarning):
    """Annotation files are usable but incomplete (for example images with no bbox row)."""


# An absolute path, a drive letter, or a ".." part: any of them can point outside the dataset root.
_ESCAPING_PATH = r"^[/\\~]|^[A-Za-z]:|(?:^|[/\\])\.\.(?:[/\\]|$)"


def _check_image_paths(table: _Table, names: np.ndarray) -> None:
    """Image names must stay under the dataset root: refuse absolute paths and ``..`` parts, naming the line."""
    escaping = np.flatnonzero(pd.Series(names, dtype=object).astype(str).str.contains(_ESCAPING_PATH, regex=True).to_numpy())
    if escaping.size:
        i = int(escaping[0])
        raise table.error(i, f"image path {names[i]!r} leaves the dataset root; image paths must be relative and stay under it "
                             f"(no leading '/', drive letter or '..')")


def _fixed_columns(table: _Table, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Check that every record has exactly ``len(names)`` values; return them as object columns."""
    _check_width(table, len(names), f"{len(names)} values ({' '.join(names)})")
    return {name: table.texts(c) for c, name in enumerate(names)}


def _numbers(table: _Table, columns: list[int], what: str, *, rows: Optional[np.ndarray] = None, integer: bool = False) -> np.ndarray:
    """(rows, columns) float64 values of numeric columns; a bad token raises naming its line."""
    rows = np.arange(len(table)) if rows is None else np.asarray(rows)
    block = table.frame.iloc[rows][columns]
    out = np.empty(block.shape, dtype=np.float64)
    for j, column in enumerate(columns):
        values = block[column]
        if not pd.api.types.is_numeric_dtype(values):  # pandas kept the column as text: a bad token
            converted = pd.to_numeric(values, errors="coerce")
            bad = np.flatnonzero((converted.isna() & values.notna()).to_numpy())
            if bad.size:
                raise table.error(int(rows[bad[0]]), f"{what}: {values.iloc[bad[0]]!r} is not a number")
            values = converted
        out[:, j] = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(out)
    if integer:
        bad |= np.isfinite(out) & (out != np.round(out))
    if bad.any():
        r, j = (int(v) for v in np.argwhere(bad)[0])
        token = table.tokens(int(rows[r]))[columns[j]]
        raise table.error(int(rows[r]), f"{what}: {token!r} is not {'an integer' if integer else 'a finite number'}")
    return out


def _clothes_types(table: _Table, column: int) -> np.ndarray:
    types = _numbers(table, [column], "clothes_type", integer=True)[:, 0].astype(np.int64)
    unknown = np.flatnonzero(~np.isin(types, list(CLOTHES_TYPE_SLOTS)))
    if unknown.size:
        i = int(unknown[0])
        raise table.error(i, f"unknown clothes_type {table.tokens(i)[column]!r} (expected 1 upper-body, 2 lower-body or 3 full-body)")
    return types


def _check_splits(table: _Table, splits: np.ndarray, allowed: tuple[str, ...]) -> None:
    bad = np.flatnonzero(~pd.Series(splits, dtype=object).isin(allowed).to_numpy())
    if bad.size:
        i = int(bad[0])
        raise table.error(i, f"bad evaluation_status {splits[i]!r} (expected one of {', '.join(allowed)})")


def _check_unique_images(table: _Table, names: np.ndarray) -> np.ndarray:
    """Boolean mask of records to keep: an exact repeat of a record is dropped, a conflicting one is an error."""
    names = pd.Series(names, dtype=object)
    repeated = names.duplicated(keep="first").to_numpy()
    if repeated.any():
        first_of: dict[str, int] = {}
        for i, name in enumerate(names):
            first_of.setdefault(name, i)
        for i in np.flatnonzero(repeated):
            j = first_of[names.iat[i]]
            if table.tokens(int(i)) != table.tokens(j):
                raise table.error(int(i), f"{names.iat[i]} is listed again with different values (first at line {table.lines[j]})")
    return ~repeated


@dataclass
class _Records:
    """A small list file read line by line (for rows whose names may contain spaces)."""

    path: Path
    header: list[str]
    records: list[list[str]]
    lines: list[int]

    def error(self, record: int, problem: str) -> AnnotationError:
        return AnnotationError(self.path, self.lines[record], problem)


def _read_records(path: Path, *, required: bool = True) -> Optional[_Records]:
    pre = _read_preamble(path, True, required)
    if pre is None:
        return None
    records, lines = [], []
    for number, line in enumerate(pre.text.split("\n")[pre.first_line - 1 :], start=pre.first_line):
        tokens = line.split()
        if tokens:
            records.append(tokens)
            lines.append(number)
    _check_count(pre, len(records))
    return _Records(path, pre.header, records, lines)


# --------------------------------------------------------------------------------------------
# Individual list files
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Assembling the frame
# --------------------------------------------------------------------------------------------


def _category_from_path(paths: pd.Series) -> pd.Series:
    """``img/<GENDER or GROUP>/<CATEGORY>/id_.../file.jpg`` -> CATEGORY (<NA> for other layouts)."""
    return paths.astype("string").str.extract(r"^img/[^/]*/([^/]+)/[^/]*/", expand=False).astype("string")


def _progress(iterable, total: int, desc: str):
    return tqdm(iterable, total=total, desc=desc, leave=False, disable=total < _PROGRESS_MIN_ROWS)


def _verify_images(root: Path, frame: pd.DataFrame, listing: _Table) -> None:
    """Every listed image must exist; the error names the image and the list line that listed it."""
    images, records = frame["image_path"].to_numpy(dtype=object), frame["_record"].to_numpy()
    for image, record in _progress(zip(images, records), len(frame), "checking images"):
        if not os.path.isfile(root / image):
            raise listing.error(int(record), f"image {image} listed here is missing on disk ({root / image})")


def _join_annotations(frame: pd.DataFrame, bboxes: Optional[pd.DataFrame], landmarks: Optional[pd.DataFrame]) -> pd.DataFrame:
    if bboxes is not None:
        frame = frame.join(bboxes, on="image_path")
    if landmarks is not None:
        frame = frame.join(landmarks, on="image_path")
    return frame


def _resolve_clothes_type(frame: pd.DataFrame, bbox_file: Optional[_Table], landmark_file: Optional[_Table]) -> pd.Series:
    """The landmark file's clothes type (it decides the slots), else the bbox file's; they must agree."""
    from_landmarks = frame["lm_clothes_type"] if "lm_clothes_type" in frame else pd.Series(np.nan, index=frame.index)
    from_bbox = frame["bbox_clothes_type"] if "bbox_clothes_type" in frame else pd.Series(np.nan, index=frame.index)
    clash = from_landmarks.notna() & from_bbox.notna() & (from_landmarks != from_bbox)
    if clash.any():
        row = frame[clash].iloc[0]
        raise landmark_file.error(
            int(row["lm_record"]),
            f"clothes_type {int(row['lm_clothes_type'])} of {row['image_path']} disagrees with clothes_type "
            f"{int(row['bbox_clothes_type'])} at {bbox_file.path}:{bbox_file.lines[int(row['bbox_record'])]}",
        )
    return from_landmarks.fillna(from_bbox).astype("Int64")


def _image_size(root: Path, image: str, listing: _Table, record: int) -> tuple[int, int]:
    """Width and height from the image header only (PIL opens lazily, no pixel decoding)."""
    try:
        with Image.open(root / image) as img:
            return img.size
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise listing.error(record, f"cannot read the header of image {image}: {exc}") from None


def _clip_bboxes(root: Path, frame: pd.DataFrame, bbox_file: Optional[_Table], verify_images: bool) -> pd.DataFrame:
    """Clip boxes into their images: negative coordinates to 0 always; x2/y2 to the image size when
    ``verify_images`` (real files have boxes a pixel or a few past the border). An empty box after
    clipping is an error naming the bbox line."""
    if bbox_file is None or "bbox_x1" not in frame:
        return frame
    box = frame[schema.BBOX_COLUMNS].to_numpy(np.float64, na_value=np.nan).copy()
    known = np.flatnonzero(~np.isnan(box).any(axis=1))
    box[known] = np.maximum(box[known], 0.0)
    if verify_images:
        records, images = frame["bbox_record"].to_numpy(), frame["image_path"].to_numpy(dtype=object)
        for i in _progress(known, len(known), "reading image sizes"):
            width, height = _image_size(root, images[i], bbox_file, int(records[i]))
            box[i, 2] = min(box[i, 2], width)
            box[i, 3] = min(box[i, 3], height)
    empty = np.flatnonzero((box[:, 2] < box[:, 0]) | (box[:, 3] < box[:, 1]))
    if empty.size:
        i = int(empty[0])
        raise bbox_file.error(
            int(frame["bbox_record"].iat[i]),
            f"bbox of {frame['image_path'].iat[i]} is empty after clipping to the image: "
            f"x {box[i, 0]:g}..{box[i, 2]:g}, y {box[i, 1]:g}..{box[i, 3]:g}",
        )
    frame = frame.copy()
    frame[schema.BBOX_COLUMNS] = box
    return frame


def _attach_attributes(frame: pd.DataFrame, attributes: Optional[dict[str, np.ndarray]]) -> pd.DataFrame:
    if attributes is not None:
        # one lookup per distinct item, then spread to the rows (rows of an item share one array)
        codes, items = pd.factorize(frame["item_id"])
        per_item = np.empty(len(items) + 1, dtype=object)
        per_item[:-1] = [attributes.get(item) for item in items]
        frame["attributes"] = pd.Series(per_item[codes], index=frame.index, dtype=object)  # code -1 -> None
    return frame


def _warn_unannotated(frame: pd.DataFrame, listing: _Table, bbox_file: Optional[_Table], landmark_file: Optional[_Table]) -> None:
    """One warning per annotation file that lacks rows for some listed images, with the count and an example."""
    for table, column in ((bbox_file, "bbox_record"), (landmark_file, "lm_record")):
        if table is None or column not in frame:
            continue
        missing = frame[column].isna().to_numpy()
        if missing.any():
            example = frame["image_path"].to_numpy(dtype=object)[np.flatnonzero(missing)[0]]
            warnings.warn(
                f"{table.path}: {int(missing.sum())} of the {len(frame)} images listed in {listing.path} have no row here "
                f"(for example {example}); they are used without {'a bbox' if column == 'bbox_record' else 'landmarks'}",
                AnnotationWarning,
                stacklevel=3,
            )


def _finish(root: Path, frame: pd.DataFrame, listing: _Table, bbox_file, landmark_file, verify_images: bool) -> pd.DataFrame:
    _warn_unannotated(frame, listing, bbox_file, landmark_file)
    frame["clothes_type"] = _resolve_clothes_type(frame, bbox_file, landmark_file)
    for column in schema.LANDMARK_VIS_COLUMNS:  # images without a landmark row: every slot absent
        if column in frame:
            frame[column] = frame[column].fillna(ABSENT).astype(np.int64)
    if verify_images:
        _verify_images(root, frame, listing)
    frame = _clip_bboxes(root, frame, bbox_file, verify_images)
    return schema.conform(frame)


def _read_partition(root: Path, names: tuple[str, ...]) -> _Table:
    """``Eval/list_eval_partition.txt``: every column is text."""
    return _read_table(root / "Eval" / "list_eval_partition.txt", len(names), tuple(range(len(names))), f"{len(names)} values ({' '.join(names)})")


def _partition_frame(images: np.ndarray, records: np.ndarray, **columns) -> pd.DataFrame:
    return pd.DataFrame({"image_path": images, **columns, "_record": records})


# --------------------------------------------------------------------------------------------
# Benchmarks
# --------------------------------------------------------------------------------------------


def read_inshop(root: PathLike, verify_images: bool = True) -> pd.DataFrame:
    """Read an In-shop Clothes Retrieval root into one schema frame (one row per partition image).

    Required: ``Eval/list_eval_partition.txt``, ``Anno/list_bbox_inshop.txt``. Optional:
    ``Anno/list_landmarks_inshop.txt`` (landmarks, variation_type; without it variation_type is the
    bbox file's pose_type), ``Anno/list_item_inshop.txt`` (every partition item must be in it),
    ``Anno/list_attr_cloth.txt`` + ``Anno/list_attr_items.txt`` (item attributes),
    ``Anno/list_category_cloth.txt`` + ``Anno/list_category_img.txt`` (categories for images whose
    path does not give one). Category comes from ``img/GENDER/CATEGORY/id_.../NN_V_view.jpg``.
    With ``verify_images`` every image must exist and boxes are clipped to the image size.
    """
    root = Path(root)
    anno = root / "Anno"
    partition = _read_partition(root, ("image_name", "item_id", "evaluation_status"))
    cols = _fixed_columns(partition, ("image_name", "item_id", "evaluation_status"))
    _check_image_paths(partition, cols["image_name"])
    _check_splits(partition, cols["evaluation_status"], schema.SPLITS_INSHOP)
    keep = _check_unique_images(partition, cols["image_name"])
    records = np.flatnonzero(keep)
    _check_items_listed(partition, cols["item_id"][records], records, _read_item_ids(anno / "list_item_inshop.txt"))

    bbox_file = _read_bbox_table(anno / "list_bbox_inshop.txt", "pose_type", required=True)
    landmark_file = _read_landmark_table(anno / "list_landmarks_inshop.txt", required=False)
    frame = _partition_frame(
        cols["image_name"][records],
        records,
        item_id=cols["item_id"][records],
        split=cols["evaluation_status"][records],
        source="shop",
    )
    frame = _join_annotations(frame, _parse_bboxes(bbox_file, "pose_type"), None if landmark_file is None else _parse_landmarks(landmark_file))
    pose = frame["pose_type"].astype("Int64")
    frame["variation_type"] = frame["lm_variation_type"].astype("Int64").fillna(pose) if "lm_variation_type" in frame else pose

    frame["category"] = _category_from_path(frame["image_path"])
    listed_categories = _read_category_files(anno)
    if listed_categories is not None:
        frame["category"] = frame["category"].fillna(frame["image_path"].map(listed_categories).astype("string"))
    attributes = _read_item_attributes(anno)
    frame = _attach_attributes(frame, attributes)
    return _finish(root, frame, partition, bbox_file, landmark_file, verify_images)


def read_consumer2shop(root: PathLike, verify_images: bool = True) -> pd.DataFrame:
    """Read a Consumer-to-shop Clothes Retrieval root into one schema frame.

    The partition lists pairs (``image_pair_name_1 image_pair_name_2 item_id evaluation_status``);
    they become one row per unique image, name_1 a consumer image, name_2 a shop image, split by
    item. Required: ``Eval/list_eval_partition.txt``, ``Anno/list_bbox_consumer2shop.txt`` (its
    source_type must agree with the partition). Optional: ``Anno/list_landmarks_consumer2shop.txt``,
    ``Anno/list_item_consumer2shop.txt``, ``Anno/list_attr_cloth.txt`` + ``list_attr_items.txt``
    (+ ``list_attr_type.txt``, see :func:`read_attribute_table`). Category comes from
    ``img/GROUP/CATEGORY/id_.../...``.
    """
    root = Path(root)
    anno = root / "Anno"
    partition = _read_partition(root, ("image_pair_name_1", "image_pair_name_2", "item_id", "evaluation_status"))
    cols = _fixed_columns(partition, ("image_pair_name_1", "image_pair_name_2", "item_id", "evaluation_status"))
    _check_image_paths(partition, cols["image_pair_name_1"])
    _check_image_paths(partition, cols["image_pair_name_2"])
    _check_splits(partition, cols["evaluation_status"], schema.SPLITS_CONSUMER2SHOP)
    _check_items_listed(partition, cols["item_id"], np.arange(len(partition)), _read_item_ids(anno / "list_item_consumer2shop.txt"))

    # Items are not shared between splits: every pair of an item must carry the same split.
    pairs = pd.DataFrame({"item": cols["item_id"], "split": cols["evaluation_status"]})
    item_split = pairs.groupby("item", sort=False)["split"].transform("first")
    clash = np.flatnonzero(item_split.to_numpy() != pairs["split"].to_numpy())
    if clash.size:
        i = int(clash[0])
        raise partition.error(i, f"item {cols['item_id'][i]} is in split {cols['evaluation_status'][i]!r} here but {item_split.iat[i]!r} on an earlier line")

    n = len(partition)
    long = pd.DataFrame(
        {
            "image_path": np.concatenate([cols["image_pair_name_1"], cols["image_pair_name_2"]]),
            "item_id": np.concatenate([cols["item_id"], cols["item_id"]]),
            "split": np.concatenate([cols["evaluation_status"], cols["evaluation_status"]]),
            "source": np.repeat(np.array(["consumer", "shop"], dtype=object), n),
            "_record": np.concatenate([np.arange(n), np.arange(n)]),
        }
    ).sort_values("_record", kind="stable")  # first appearance in file order, name_1 before name_2
    first = long.groupby("image_path", sort=False)[["item_id", "source"]].transform("first")
    conflict = np.flatnonzero((first["item_id"] != long["item_id"]).to_numpy() | (first["source"] != long["source"]).to_numpy())
    if conflict.size:
        row = long.iloc[int(conflict[0])]
        raise partition.error(
            int(row["_record"]),
            f"image {row['image_path']} appears here as a {row['source']} image of {row['item_id']} but earlier as a "
            f"{first['source'].iat[int(conflict[0])]} image of {first['item_id'].iat[int(conflict[0])]}",
        )
    frame = long.drop_duplicates("image_path", keep="first").reset_index(drop=True)

    bbox_file = _read_bbox_table(anno / "list_bbox_consumer2shop.txt", "source_type", required=True)
    landmark_file = _read_landmark_table(anno / "list_landmarks_consumer2shop.txt", required=False)
    bboxes = _parse_bboxes(bbox_file, "source_type")
    unknown = np.flatnonzero(~bboxes["source_type"].isin(list(_SOURCE_TYPES)).to_numpy())
    if unknown.size:
        row = bboxes.iloc[int(unknown[0])]
        raise bbox_file.error(int(row["bbox_record"]), f"unknown source_type {row['source_type']} (expected 1 shop or 2 consumer)")
    frame = _join_annotations(frame, bboxes, None if landmark_file is None else _parse_landmarks(landmark_file))
    listed_source = frame["source_type"].map(_SOURCE_TYPES)
    disagree = np.flatnonzero((frame["source_type"].notna() & (listed_source != frame["source"])).to_numpy())
    if disagree.size:
        row = frame.iloc[int(disagree[0])]
        raise bbox_file.error(
            int(row["bbox_record"]),
            f"source_type {row['source_type']} of {row['image_path']} (1 shop, 2 consumer) contradicts "
            f"{partition.path}:{partition.lines[int(row['_record'])]}, where it is a {row['source']} image",
        )
    if "lm_variation_type" in frame:
        frame["variation_type"] = frame["lm_variation_type"].astype("Int64")
    frame["category"] = _category_from_path(frame["image_path"])
    attributes = _read_item_attributes(anno)
    frame = _attach_attributes(frame, attributes)
    return _finish(root, frame, partition, bbox_file, landmark_file, verify_images)


def read_fld(root: PathLike, verify_images: bool = True) -> pd.DataFrame:
    """Read a Fashion Landmark Detection root into one schema frame (one row per partition image).

    Required: ``Eval/list_eval_partition.txt`` (``image_name evaluation_status``) and
    ``Anno/list_landmarks.txt``; optional ``Anno/list_bbox.txt`` (``image_name x_1 y_1 x_2 y_2``).
    FLD has no items, sources or categories: those columns are <NA>.
    """
    root = Path(root)
    anno = root / "Anno"
    partition = _read_partition(root, ("image_name", "evaluation_status"))
    cols = _fixed_columns(partition, ("image_name", "evaluation_status"))
    _check_image_paths(partition, cols["image_name"])
    _check_splits(partition, cols["evaluation_status"], schema.SPLITS_FLD)
    records = np.flatnonzero(_check_unique_images(partition, cols["image_name"]))
    landmark_file = _read_landmark_table(anno / "list_landmarks.txt", required=True)
    bbox_file = _read_bbox_table(anno / "list_bbox.txt", None, required=False)
    frame = _partition_frame(cols["image_name"][records], records, split=cols["evaluation_status"][records])
    frame = _join_annotations(frame, None if bbox_file is None else _parse_bboxes(bbox_file, None), _parse_landmarks(landmark_file))
    frame["variation_type"] = frame["lm_variation_type"].astype("Int64")
    return _finish(root, frame, partition, bbox_file, landmark_file, verify_images)


_READERS = {"inshop": read_inshop, "consumer2shop": read_consumer2shop, "fld": read_fld}


def detect_benchmark(root: PathLike) -> str:
    """Which benchmark a root holds ("inshop", "consumer2shop" or "fld"), judged by its Anno/ files."""
    root = Path(root)
    found = [name for name, markers in _MARKER_FILES.items() if any((root / m).is_file() for m in markers)]
    if len(found) != 1:
        expected = ", ".join(m for markers in _MARKER_FILES.values() for m in markers)
        problem = "no DeepFashion benchmark found" if not found else f"files of several benchmarks found ({', '.join(found)})"
        raise AnnotationError(root, None, f"{problem}; expected exactly one benchmark's files among: {expected}")
    return found[0]


def read_benchmark(root: PathLike, benchmark: Optional[str] = None, verify_images: bool = True) -> pd.DataFrame:
    """Read a benchmark root with the matching reader; ``benchmark=None`` detects it."""
    benchmark = detect_benchmark(root) if benchmark is None else benchmark
    if benchmark not in _READERS:
        raise ValueError(f"unknown benchmark {benchmark!r}; expected one of {', '.join(BENCHMARKS)}")
    return _READERS[benchmark](root, verify_images=verify_images)


# --------------------------------------------------------------------------------------------
# Label helpers
# --------------------------------------------------------------------------------------------


def item_label_maps(frame: pd.DataFrame) -> tuple[dict[str, int], list[str]]:
    """Item id -> dense label index (sorted ids) and the inverse list; <NA> items are left out."""
    items = sorted(frame["item_id"].dropna().astype(str).unique())
    return {item: i for i, item in enumerate(items)}, items


def category_names(frame: pd.DataFrame) -> list[str]:
    """Sorted distinct category names of a frame (<NA> left out); list index = category label."""
    return sorted(frame["category"].dropna().astype(str).unique())
