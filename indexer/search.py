"""A loaded index plus the model that built it: photo in, ranked shop items out.

The web page and ``indexer query`` both use :class:`SearchEngine`, so they answer alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import pandas as pd

from fashionnet.images import ImageInput
from fashionnet.inference import Prediction, Predictor
from fashionnet.runtime import serving_threads, set_threads
from indexer.errors import IndexMismatchError
from indexer.store import EmbeddingIndex


@dataclass
class QueryResult:
    prediction: Prediction
    matches: pd.DataFrame  # rank, score, id, image_path, item_id, category, clothes_type, ...


class SearchEngine:
    def __init__(self, index: EmbeddingIndex, predictor: Predictor):
        check_compatible(index, predictor)
        self.index = index
        self.predictor = predictor

    @classmethod
    def open(cls, index_dir: str | os.PathLike, checkpoint: Optional[str] = None, device: str = "auto",
             threads: Optional[int] = None) -> "SearchEngine":
        """Load the index and its model; refuses a checkpoint that did not build the index.

        Sets this process's torch and FAISS CPU threads for serving: ``threads``, else
        $FASHIONNET_THREADS, else 1 per query, which keeps latency steady when other processes
        load the CPU and lets concurrent queries share the cores (fashionnet.runtime).
        """
        set_threads(threads if threads is not None else serving_threads())
        index = EmbeddingIndex.load(index_dir, device=device)
        predictor = Predictor.from_checkpoint(default_checkpoint(index, checkpoint), device=device)
        return cls(index, predictor)

    def query(self, image: ImageInput, k: int = 20, clothes_type: Optional[int] = None, nprobe: Optional[int] = None) -> QueryResult:
        """Top-k gallery images for one photo; ``clothes_type`` (1 upper, 2 lower, 3 full) filters them."""
        prediction = self.predictor.predict(image)
        return QueryResult(prediction, self.search_embedding(prediction.embedding, k, clothes_type, nprobe))

    # ------------------------------------------------------------------ what the page shows

    @property
    def gallery_size(self) -> int:
        return self.index.ntotal

    @property
    def category_count(self) -> int:
        """Categories the model tells apart (0 for a model without a category head)."""
        return len(self.predictor.category_names)

    @property
    def data_root(self) -> Optional[str]:
        """The DeepFashion root the gallery was built from, if it was built from one."""
        return (self.index.extra or {}).get("data_root")

    def describe(self) -> str:
        """One line about the gallery and the model, e.g. for a page's sidebar."""
        p = self.predictor
        return f"{self.gallery_size} gallery images · model {p.model_checksum} ({p.config.backbone}, {p.input_side}px)"

    def item_images(self, item_id: str) -> pd.DataFrame:
        """Every gallery row of one item, by image path."""
        gallery = self.index.metadata
        return gallery[gallery["item_id"].astype(str) == str(item_id)].sort_values("image_path")

    # ------------------------------------------------------------------------- searching

    def search_embedding(self, embedding, k: int = 20, clothes_type: Optional[int] = None, nprobe: Optional[int] = None) -> pd.DataFrame:
        want = k
        while True:
            result = self.index.search(embedding[None, :], want, nprobe=nprobe)
            rows = result.rows
            if clothes_type is not None:
                rows = rows[rows["clothes_type"] == clothes_type]
            # A filter can leave fewer than k: widen the search until k pass or the index is exhausted.
            if len(rows) >= k or want >= self.index.ntotal:
                break
            want = min(self.index.ntotal, want * 4)
        rows = rows.head(k).reset_index(drop=True)
        rows["rank"] = range(1, len(rows) + 1)
        return rows.drop(columns=["query"])


def check_compatible(index: EmbeddingIndex, predictor: Predictor) -> None:
    """Refuse to mix an index with a model that did not build it."""
    where = index.info().get("path") or "the index"
    if index.dim != predictor.embedding_dim:
        raise IndexMismatchError(f"{where} holds {index.dim}-d embeddings but the checkpoint makes {predictor.embedding_dim}-d ones; "
                                 "rebuild the index with this checkpoint (indexer build ...)")
    if index.model_checksum and index.model_checksum != predictor.model_checksum:
        raise IndexMismatchError(f"{where} was built by model {index.model_checksum}, but the checkpoint is model {predictor.model_checksum}; "
                                 "its embeddings are not comparable. Rebuild the index with this checkpoint (indexer build ...)")


def default_checkpoint(index: EmbeddingIndex, given: Optional[str]) -> str:
    """The checkpoint to embed queries with: the one given, else the one recorded at build time."""
    path = given or (index.extra or {}).get("checkpoint")
    if not path:
        raise ValueError("this index records no checkpoint; pass --checkpoint")
    return path

