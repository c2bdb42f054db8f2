"""A gallery's metadata rows: each embedded image's catalogue row (path, item, labels, the shop's
data) joined with what the model said of it, typed as the index stores them. Both backends' builds
and adds make their rows here, so a FAISS and a Milvus index of one gallery hold the same table."""

from __future__ import annotations

import pandas as pd

from indexer import layout


def metadata_rows(catalogue: pd.DataFrame, embedded_rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the images in ``embedded_rows`` (whose ``position`` column points into
    ``catalogue``), in their order."""
    base = catalogue.iloc[embedded_rows["position"].to_numpy()].reset_index(drop=True)
    base = base.astype({"image_path": "string", "item_id": "string", "category": "string", "source": "string"})
    if "image_relpath" in base:
        base["image_relpath"] = base["image_relpath"].astype("string")
    if "image_sha256" not in base:
        base["image_sha256"] = embedded_rows["image_sha256"].to_numpy()
    base["image_sha256"] = base["image_sha256"].astype("string")
    base["clothes_type"] = pd.array(base["clothes_type"], dtype="Int64")
    for column in layout.CATALOGUE_ONLY_COLUMNS:
        if column in base:
            if base[column].isna().all():
                base = base.drop(columns=column)  # not given: the index stays readable by older versions
            else:
                base[column] = base[column].astype("string")
    return pd.concat([base, embedded_rows.drop(columns=["position", "image_sha256"]).reset_index(drop=True)], axis=1)
