"""Which photos query and which form the gallery: the DeepFashion retrieval protocols, in one place.

In-shop: the ``query`` split searches the ``gallery`` split. Consumer-to-shop: the consumer photos
of the test items search the shop photos of the test items (items never cross splits). Evaluation,
``indexer build``, the page's example photos and training's validation all ask here.
"""

from __future__ import annotations

import pandas as pd

RETRIEVAL_BENCHMARKS = ("inshop", "consumer2shop")


def _check(benchmark: str) -> None:
    if benchmark not in RETRIEVAL_BENCHMARKS:
        raise ValueError(f"no retrieval protocol for benchmark {benchmark!r}; expected one of {', '.join(RETRIEVAL_BENCHMARKS)}")


def query_frame(frame: pd.DataFrame, benchmark: str, split: str = "test") -> pd.DataFrame:
    """The query photos. ``split`` picks the Consumer-to-shop items ("test", or "val" for validation)."""
    _check(benchmark)
    if benchmark == "inshop":
        return frame[frame["split"] == "query"]
    return frame[(frame["split"] == split) & (frame["source"] == "consumer")]


def gallery_frame(frame: pd.DataFrame, benchmark: str, split: str = "test") -> pd.DataFrame:
    """The gallery photos (always shop photos). ``split``: Consumer-to-shop items as above; "all"
    takes every shop photo of either benchmark."""
    _check(benchmark)
    shop = frame[frame["source"] == "shop"] if "source" in frame and frame["source"].notna().any() else frame
    if split == "all":
        return shop
    if benchmark == "inshop":
        return shop[shop["split"] == "gallery"]
    return shop[shop["split"] == split]


def protocol_frames(frame: pd.DataFrame, benchmark: str, split: str = "test") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(queries, gallery) of a benchmark's protocol."""
    return query_frame(frame, benchmark, split), gallery_frame(frame, benchmark, split)
