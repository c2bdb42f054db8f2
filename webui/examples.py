"""The page's example photos, and which of them it opens with.

The examples are the index's own query photos (a DeepFashion root's test-split consumer photos, one
per item) or a plain folder's images. The page opens with the first example the model gets right,
so a first visitor sees what a good answer looks like: its own item ranked first, as a close match,
with most of its landmarks sure. The rule is here; which photo it picks follows from the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from fashionnet.data.readers import detect_benchmark, read_benchmark, AnnotationError
from fashionnet.evaluation.protocols import query_frame

# more than this share of the photo's landmarks sure (fashionnet.inference.prediction.LOW_CONFIDENCE)
MOSTLY_SURE = 0.5


def example_photos(source: str | Path, limit: int, suffixes: Sequence[str]) -> list[tuple[str, Optional[str]]]:
    """(photo, its item id) of up to ``limit`` examples: a DeepFashion root's test-split consumer
    photos (In-shop: its query photos), one per item, or the images of a plain folder (no item id)."""
    root = Path(source)
    try:
        benchmark = detect_benchmark(root)
    except (AnnotationError, OSError):
        benchmark = None
    if benchmark in ("consumer2shop", "inshop"):
        rows = query_frame(read_benchmark(root, benchmark, verify_images=False), benchmark)
        rows = rows.drop_duplicates("item_id").sort_values("image_path").head(limit)
        return [(str(root / p), str(item)) for p, item in zip(rows["image_path"], rows["item_id"])]
    files = sorted(p for p in root.rglob("*") if p.suffix.lower().lstrip(".") in suffixes)
    return [(str(p), None) for p in files[:limit]]


def answered_well(result, item_id: Optional[str]) -> bool:
    """The model gets this photo right: its item first (where known), a close match (where the index
    can tell), a familiar photo, and most of its landmarks sure."""
    prediction = result.prediction
    if prediction.unfamiliar or result.match is False or result.matches.empty:
        return False
    if item_id is not None and str(result.matches["item_id"].iloc[0]) != str(item_id):
        return False
    present = prediction.present_landmarks
    return bool(present) and sum(not lm.low_confidence for lm in present) > MOSTLY_SURE * len(present)


def first_good_example(engine, examples: Sequence[tuple[str, Optional[str]]]) -> int:
    """The position of the first example the model answers well (:func:`answered_well`), else 0."""
    for position, (photo, item_id) in enumerate(examples):
        if answered_well(engine.query(photo, k=1), item_id):
            return position
    return 0
