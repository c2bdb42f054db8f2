"""Readers for the DeepFashion annotation files of three benchmarks.

Each reader turns one benchmark root (the folder holding ``img/``, ``Anno/`` and ``Eval/``) into ONE
pandas frame in the schema of :mod:`fashionnet.data.schema`, one row per image of the evaluation
partition:

* :func:`read_inshop` - In-shop Clothes Retrieval,
* :func:`read_consumer2shop` - Consumer-to-shop Clothes Retrieval,
* :func:`read_fld` - Fashion Landmark Detection (FLD).

File formats are the official ones: a count line, a header line (``list_item_*`` has none), then
whitespace-separated records. Every problem found in a file raises :class:`AnnotationError` with the
file and the 1-based line, because a silent mis-parse of these files (shifted landmark slots,
clothes type read as a coordinate) poisons everything trained on them. The format is parsed in
:mod:`fashionnet.data.listfiles`, the individual files in :mod:`fashionnet.data.annotation_files`;
this module joins them into a benchmark's frame.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from fashionnet.data import schema
from fashionnet.data.annotation_files import (
    _check_items_listed,
    _parse_bboxes,
    _parse_landmarks,
    _read_bbox_table,
    _read_category_files,
    _read_item_attributes,
    _read_item_ids,
    _read_landmark_table,
    read_attribute_names,
    read_attribute_table,
    read_descriptions,
)
from fashionnet.data.listfiles import (
    AnnotationError,
    PathLike,
    _check_splits,
    _check_unique_images,
    _fixed_columns,
    _read_table,
    _Table,
)
from fashionnet.landmarks import ABSENT

__all__ = [
    "BENCHMARKS",
    "AnnotationError",
    "AnnotationWarning",
    "category_names",
    "detect_benchmark",
    "item_label_maps",
    "read_attribute_names",
    "read_attribute_table",
    "read_benchmark",
    "read_consumer2shop",
    "read_descriptions",
    "read_fld",
    "read_inshop",
]

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
_PROGRESS_MIN_ROWS = 2000  # no progress bar for loops shorter than this


class AnnotationWarning(UserWarning):
    """Annotation files are usable but incomplete (for example images with no bbox row)."""


# --------------------------------------------------------------------------------------------
# Assembling the frame
# --------------------------------------------------------------------------------------------


# An absolute path, a drive letter, or a ".." part: any of them can point outside the dataset root.
_ESCAPING_PATH = r"^[/\\~]|^[A-Za-z]:|(?:^|[/\\])\.\.(?:[/\\]|$)"


def _check_image_paths(table: _Table, names: np.ndarray) -> None:
    """Image names must stay under the dataset root: refuse absolute paths and ``..`` parts, naming the line."""
    escaping = np.flatnonzero(pd.Series(names, dtype=object).astype(str).str.contains(_ESCAPING_PATH, regex=True).to_numpy())
    if escaping.size:
        i = int(escaping[0])
        raise table.error(i, f"image path {names[i]!r} leaves the dataset root; image paths must be relative and stay under it "
                             f"(no leading '/', drive letter or '..')")


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

