"""What the HTTP API sends: gallery rows, predictions and index facts as plain JSON, with the
shop's catalogue data and where each label came from, and no path of the server's own."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional


def plain(value: Any) -> Any:
    """A JSON-safe copy: numpy scalars to Python numbers, NaN / NA to None."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()  # numpy scalar
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, int):
        return value
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def prediction_json(prediction) -> dict:
    """``Prediction.as_dict()`` as plain JSON types: each landmark with its heatmap confidence and
    low_confidence flag, the garment box, whether the photo was cropped to it and whether that box
    was cut below the wearer's face (below_face)."""
    return plain(prediction.as_dict())


def _attribute_list(value) -> list[str]:
    from indexer.embedding import ATTRIBUTE_SEPARATOR

    return [a for a in value.split(ATTRIBUTE_SEPARATOR) if a] if isinstance(value, str) else []


def gallery_rows_json(rows) -> list[dict]:
    """Result or item rows as the API shows them. Category, clothes type and attributes as the
    filters read them (the shop's own where the image has them, else the model's prediction), each
    with its source ("catalogue" or "predicted"), and the shop's free fields (title, price, ...)."""
    from indexer.catalogue_metadata import ATTRIBUTES_COLUMN, FIELDS_COLUMN, fields_of, label_source
    from indexer.search import gallery_column

    if len(rows) == 0:
        return []
    categories = gallery_column(rows, "category").tolist()
    types = gallery_column(rows, "clothes_type").tolist()
    ids = rows["id"].tolist() if "id" in rows else rows.index.tolist()
    out = []
    for i, (_, row) in enumerate(rows.iterrows()):
        image_id = int(ids[i])
        own_attributes = plain(row.get(ATTRIBUTES_COLUMN))
        attributes = own_attributes if own_attributes is not None else plain(row.get("predicted_attributes"))
        entry = {"id": image_id, "item_id": plain(row.get("item_id")),
                 "category": plain(categories[i]),
                 "category_source": label_source(plain(row.get("category")), plain(row.get("predicted_category"))),
                 "clothes_type": None if plain(types[i]) is None else int(plain(types[i])),
                 "clothes_type_source": label_source(plain(row.get("clothes_type")), plain(row.get("predicted_clothes_type"))),
                 "attributes": _attribute_list(attributes),
                 "attributes_source": label_source(own_attributes, plain(row.get("predicted_attributes"))),
                 "fields": fields_of(plain(row.get(FIELDS_COLUMN))),
                 "image_url": f"/images/{image_id}", "image_path": public_image_path(row),
                 "unfamiliar": plain(row.get("unfamiliar"))}  # flagged as not a garment photo when it was added
        if "rank" in row:
            entry = {"rank": int(row["rank"]), **entry, "score": float(row["score"])}
            if "match" in row:
                entry["match"] = plain(row["match"])
        out.append(entry)
    return out


def public_image_path(row) -> Optional[str]:
    """Where a gallery image is, as a client may see it: relative to the catalogue's image root, or
    to the index for photos added through the API (``uploads/...``); never the server's own path."""
    from indexer.portable import INSIDE_INDEX

    relpath = plain(row.get("image_relpath"))
    if isinstance(relpath, str) and relpath:
        return relpath[len(INSIDE_INDEX):] if relpath.startswith(INSIDE_INDEX) else relpath
    path = plain(row.get("image_path"))
    return Path(path).name if path else None


PUBLIC_EXTRA = ("input_side", "image_size", "flip_average", "shard", "skipped_count", "checkpoint_in_index")


def public_index_info(info: dict) -> dict:
    """``EmbeddingIndex.info()`` without the server's paths (the index's own path, the checkpoint's,
    the image and data roots, the build command and the skipped files)."""
    public = {key: value for key, value in info.items() if key not in ("path", "extra", "milvus_uri")}  # a Lite file's path is the server's
    extra = info.get("extra") or {}
    public["extra"] = {key: extra[key] for key in PUBLIC_EXTRA if key in extra}
    return public
