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
from indexer.build import check_compatible, default_checkpoint
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
