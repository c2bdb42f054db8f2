"""The single pandas schema every DeepFashion reader returns.

One row per image. Landmarks are flattened into named columns (``left_collar_x``,
``left_collar_y``, ``left_collar_vis`` ...) so tables stay plain pandas and save to parquet.
Coordinates are pixels in the image as stored; slots the clothes type lacks hold NaN and
visibility ABSENT (3).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fashionnet.landmarks import ABSENT, LANDMARK_NAMES, NUM_LANDMARKS

SPLITS_INSHOP = ("train", "query", "gallery")
SPLITS_CONSUMER2SHOP = ("train", "val", "test")
SPLITS_FLD = ("train", "val", "test")
SOURCES = ("shop", "consumer")

LANDMARK_X_COLUMNS = [f"{n}_x" for n in LANDMARK_NAMES]
LANDMARK_Y_COLUMNS = [f"{n}_y" for n in LANDMARK_NAMES]
LANDMARK_VIS_COLUMNS = [f"{n}_vis" for n in LANDMARK_NAMES]
BBOX_COLUMNS = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"]

# column -> dtype. Nullable dtypes where a benchmark may not know the value.
COLUMNS: dict[str, str] = {
    "image_path": "string",  # relative to the dataset root, e.g. img/WOMEN/Dresses/id_00000002/02_1_front.jpg
    "item_id": "string",  # e.g. id_00000002
    "split": "string",  # train/query/gallery (In-shop), train/val/test (Consumer-to-shop, FLD)
    "source": "string",  # shop or consumer
    "clothes_type": "Int64",  # 1 upper, 2 lower, 3 full
    "variation_type": "Int64",  # pose_type (In-shop bbox file) or variation_type (landmark file)
    **{c: "float64" for c in BBOX_COLUMNS},
    "category": "string",  # e.g. Dresses; <NA> where unknown
    "attributes": "object",  # np.int8 array of {1, -1, 0} per attribute, or None where unknown
    **{c: "float64" for c in LANDMARK_X_COLUMNS},
    **{c: "float64" for c in LANDMARK_Y_COLUMNS},
    **{c: "int64" for c in LANDMARK_VIS_COLUMNS},
}


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with exactly the schema's columns, order and dtypes (missing ones filled)."""
    out = pd.DataFrame(index=df.index)
    for col, dtype in COLUMNS.items():
        if col in df.columns:
            out[col] = df[col]
        elif col in LANDMARK_VIS_COLUMNS:
            out[col] = ABSENT
        elif col == "attributes":
            out[col] = pd.Series([None] * len(df), index=df.index, dtype=object)
        else:
            out[col] = pd.NA if dtype in ("string", "Int64") else np.nan
        out[col] = out[col].astype(dtype)
    return out.reset_index(drop=True)


def landmarks_of(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(N, 8, 2) float32 pixel coordinates and (N, 8) int64 visibility codes of a schema frame."""
    xy = np.stack([df[LANDMARK_X_COLUMNS].to_numpy(np.float32), df[LANDMARK_Y_COLUMNS].to_numpy(np.float32)], axis=-1)
    vis = df[LANDMARK_VIS_COLUMNS].to_numpy(np.int64)
    assert xy.shape[1] == NUM_LANDMARKS
    return xy, vis


def bboxes_of(df: pd.DataFrame) -> np.ndarray:
    """(N, 4) float32 x1, y1, x2, y2; NaN where unknown."""
    return df[BBOX_COLUMNS].to_numpy(np.float32)
