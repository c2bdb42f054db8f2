"""The torch Dataset over a schema frame: one image, its landmarks and its labels per row."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, default_collate

from fashionnet.data.images import load_image
from fashionnet.data.schema import bboxes_of, conform, landmarks_of
from fashionnet.data.transforms import build_transforms

ON_ERROR_CHOICES = ("raise", "skip")
logger = logging.getLogger(__name__)


def make_label_map(values: Iterable[Any]) -> dict[str, int]:
    """Map each distinct non-missing value (as str) to an index, in sorted order, so the same values
    always give the same labels."""
    distinct = {str(v) for v in values if v is not None and not pd.isna(v)}
    return {value: index for index, value in enumerate(sorted(distinct))}


@dataclass(frozen=True)
class SkippedSample:
    """Stands in for a sample whose image could not be used (``on_error="skip"``).

    It is falsy like None, so ``if not sample`` catches both, but it carries the error message to
    :func:`collate_skip_none`, which drops it and reports the message in the batch.
    """

    index: int
    image_path: str
    error: str

    def __bool__(self) -> bool:
        return False


def collate_skip_none(batch: list) -> Optional[dict[str, Any]]:
    """``default_collate`` over the usable samples of ``batch``; None and :class:`SkippedSample`
    entries are dropped. The result has ``"errors"``: the messages of the dropped samples (empty
    when none was dropped). When no sample is usable it returns None (loops skip such a batch)
    and logs the messages as a warning instead."""
    good = [sample for sample in batch if sample]
    errors = [s.error if isinstance(s, SkippedSample) else "sample was None" for s in batch if not s]
    if not good:
        logger.warning("every sample of a batch was skipped:\n  %s", "\n  ".join(errors))
        return None
    out = default_collate(good)
    out["errors"] = errors
    return out


def _label_lookup(values: pd.Series, labels: Mapping[str, int], what: str, unknown_raises: bool) -> np.ndarray:
    out = np.full(len(values), -1, dtype=np.int64)
    missing = set()
    for row, value in enumerate(values):
        if value is None or pd.isna(value):
            continue
        label = labels.get(str(value))
        if label is None:
            missing.add(str(value))
        else:
            out[row] = label
    if missing and unknown_raises:
        shown = ", ".join(sorted(missing)[:5])
        raise ValueError(f"{len(missing)} {what} value(s) of the frame are not in the given {what} labels: {shown}")
    return out


class DeepFashionDataset(Dataset):
    """Samples of a schema frame (see :mod:`fashionnet.data.schema`) for training and embedding.

    ``root`` is the dataset root the frame's ``image_path`` values are relative to; ``transform``
    is a :func:`~fashionnet.data.transforms.build_transforms` callable (default: the evaluation
    transform at 224). A sample is a dict:

    - "image" float32 (3, S, S), normalised; "landmarks" float32 (8, 2) in [0, 1] of the image
      (absent slots hold 0, not NaN, so a visibility-masked loss can never turn NaN);
    - "visibility" int64 (8,) codes 0..3; "item" int64 item label; "category" int64 (-1 unknown);
    - "attributes" float32 (A,) in {1, -1, 0} (0 unknown; all 0 for rows without attributes);
    - "clothes_type" int64 (-1 unknown); "index" int64 row of the frame;
    - "original_size" int64 (2,): width, height of the image file as loaded, to map predicted
      landmarks back to its pixels (with ``letterbox_geometry(w, h, S)`` when not cropped);
    - "bbox" float32 (4,): the garment box (x1, y1, x2, y2) in [0, 1] of the model input, moved
      with the pixels; "has_bbox" bool: whether the row had a usable box (else "bbox" is zeros).

    ``item_labels`` / ``category_labels`` map ids/names to label indices; when not given they are
    built from the frame with :func:`make_label_map`. An item missing from given ``item_labels``
    is an error; a category missing from given ``category_labels`` gets -1 (unknown to the model).

    ``on_error="raise"`` lets the :class:`~fashionnet.data.images.ImageLoadError` (which names the file)
    propagate; ``"skip"`` returns a falsy :class:`SkippedSample` instead, for
    :func:`collate_skip_none` to drop.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        root: str | os.PathLike,
        transform: Optional[Callable] = None,
        item_labels: Optional[Mapping[str, int]] = None,
        category_labels: Optional[Mapping[str, int]] = None,
        on_error: str = "raise",
    ):
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
        if "image_path" not in frame.columns:
            raise ValueError("the frame has no image_path column; expected a schema frame (fashionnet.data.schema)")
        self.frame = conform(frame)
        if self.frame["image_path"].isna().any():
            rows = np.flatnonzero(self.frame["image_path"].isna().to_numpy())[:5].tolist()
            raise ValueError(f"the frame has rows without an image_path (rows {rows})")
        self.root = Path(root)
        self.transform = transform if transform is not None else build_transforms(train=False)
        self.on_error = on_error

        self.item_labels = dict(item_labels) if item_labels is not None else make_label_map(self.frame["item_id"])
        self.category_labels = (
            dict(category_labels) if category_labels is not None else make_label_map(self.frame["category"])
        )
        # Per-row arrays, so workers do no pandas work per sample.
        self.image_paths: list[str] = self.frame["image_path"].tolist()
        self.item_per_row = _label_lookup(self.frame["item_id"], self.item_labels, "item", unknown_raises=True)
        self.category_per_row = _label_lookup(
            self.frame["category"], self.category_labels, "category", unknown_raises=False
        )
        self.clothes_type_per_row = self.frame["clothes_type"].fillna(-1).to_numpy(np.int64)
        self.landmarks_xy, self.visibility = landmarks_of(self.frame)
        self.bboxes = bboxes_of(self.frame)
        self.attributes = self.frame["attributes"].tolist()
        self.num_attributes = self._check_attributes()

    def _check_attributes(self) -> int:
        lengths = {len(a) for a in self.attributes if a is not None}
        if len(lengths) > 1:
            first = len(next(a for a in self.attributes if a is not None))
            row = next(i for i, a in enumerate(self.attributes) if a is not None and len(a) != first)
            raise ValueError(
                f"{self.image_paths[row]} (row {row}): {len(self.attributes[row])} attributes, "
                f"other rows have {first}"
            )
        return lengths.pop() if lengths else 0

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor] | SkippedSample:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        path = self.root / self.image_paths[index]
        bbox = self.bboxes[index]
        try:
            image = load_image(path)
            try:
                image_t, landmarks, visibility, box = self._transform(
                    image, self.landmarks_xy[index], self.visibility[index], None if np.isnan(bbox).all() else bbox
                )
            except ValueError as exc:  # a bad annotation (bbox, landmarks): name the file and row
                raise ValueError(f"{path} (row {index}): {exc}") from exc
        except ValueError as exc:  # ImageLoadError is a ValueError too
            if self.on_error == "skip":
                return SkippedSample(index, self.image_paths[index], str(exc))
            raise
        attributes = self.attributes[index]
        if attributes is None:
            attributes = np.zeros(self.num_attributes, dtype=np.float32)
        return {
            "image": image_t,
            "landmarks": torch.nan_to_num(landmarks, nan=0.0),
            "visibility": visibility,
            "item": torch.tensor(self.item_per_row[index], dtype=torch.int64),
            "category": torch.tensor(self.category_per_row[index], dtype=torch.int64),
            "attributes": torch.as_tensor(np.asarray(attributes, dtype=np.float32)),
            "clothes_type": torch.tensor(self.clothes_type_per_row[index], dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
            "original_size": torch.tensor(image.size, dtype=torch.int64),
            "bbox": box if box is not None else torch.zeros(4, dtype=torch.float32),
            "has_bbox": torch.tensor(box is not None),
        }

    def _transform(self, image, landmarks_xy, visibility, bbox):
        """The transform's (image, landmarks, visibility, bbox in [0, 1] of the input or None); a
        custom transform without ``with_bbox`` gives no bbox."""
        with_bbox = getattr(self.transform, "with_bbox", None)
        if with_bbox is not None:
            image_t, landmarks, visibility, _, box = with_bbox(image, landmarks_xy, visibility, bbox)
            return image_t, landmarks, visibility, box
        image_t, landmarks, visibility, _ = self.transform(image, landmarks_xy, visibility, bbox)
        return image_t, landmarks, visibility, None
