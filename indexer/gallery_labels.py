"""The labels a gallery image is filtered by: the shop's own (catalogue metadata or an annotation)
where it has one, else the model's prediction.

One definition for both backends: the FAISS search reads them from the metadata table when it
picks the allowed ids (:mod:`indexer.search`), and the Milvus collection stores them as scalar
fields when a row is written (:mod:`indexer.milvus_collection`), so a filter means the same on both.
"""

from __future__ import annotations

import pandas as pd

from indexer.layout import CATALOGUE_ATTRIBUTES_COLUMN as ATTRIBUTES_COLUMN

ATTRIBUTE_SEPARATOR = "|"  # between the attribute names of one image in a metadata column


def gallery_column(gallery: pd.DataFrame, name: str) -> pd.Series:
    """A gallery column from its annotation, filled from the model's prediction where it has none
    (``predicted_<name>``), so filters work on a shop's unannotated photos too."""
    annotated = gallery[name] if name in gallery else pd.Series(pd.NA, index=gallery.index, dtype=object)
    predicted = f"predicted_{name}"
    if predicted in gallery:
        annotated = annotated.astype(object).where(annotated.notna(), gallery[predicted].astype(object))
    return annotated


def gallery_attributes(gallery: pd.DataFrame) -> list[set[str]]:
    """Each gallery image's attribute names (lower case): the catalogue's where the image has them,
    else the model's predicted ones."""
    own = [c for c in (ATTRIBUTES_COLUMN, "attributes_text") if c in gallery]  # attributes_text: older indexes
    column = gallery[own[0]].astype(object) if own else pd.Series(None, index=gallery.index, dtype=object)
    if "predicted_attributes" in gallery:
        column = column.where(column.notna(), gallery["predicted_attributes"].astype(object))
    return [set(str(v).lower().split(ATTRIBUTE_SEPARATOR)) - {""} if isinstance(v, str) else set() for v in column]


def familiar_mask(gallery: pd.DataFrame) -> pd.Series:
    """True for the images not flagged unfamiliar when they were added (an index without the flag: all)."""
    if "unfamiliar" not in gallery:
        return pd.Series(True, index=gallery.index)
    return ~gallery["unfamiliar"].astype("boolean").fillna(False).astype(bool)
