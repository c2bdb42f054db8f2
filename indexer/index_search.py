"""Searching an :class:`indexer.store.EmbeddingIndex`: the k nearest vectors of each query, on the
GPU copy where FAISS sees a GPU (k above FAISS's GPU limit, or an id filter, goes to the CPU index),
re-ranked exactly where the index asks for it (:mod:`indexer.rerank`), with the metadata rows.

:class:`IndexSearch` is a part of ``EmbeddingIndex``: it uses the index's FAISS index, metadata,
lock, re-ranker and GPU copy.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import faiss
import numpy as np
import pandas as pd

from indexer.exact_search import search_one_flat
from indexer.faiss_tools import ivf_of, search_cpu
from indexer.result_rows import result_rows, rows_of

# FAISS's GPU k-selection handles k (and nprobe) up to GPU_MAX_SELECTION_K = 2048
# (faiss/gpu/utils/DeviceDefs.cuh); larger searches go to the CPU index.
GPU_MAX_K = 2048


class SearchResult(NamedTuple):
    """What :meth:`EmbeddingIndex.search` returns.

    ``scores`` and ``ids`` hold one array per query, best first (shorter than k only where an
    approximate index found fewer neighbours; no -1 placeholder ever appears). ``rows`` is one
    DataFrame row per result: query (0-based), rank (1-based), score, id, then the metadata columns.
    """

    scores: list[np.ndarray]
    ids: list[np.ndarray]
    rows: pd.DataFrame


class IndexSearch:
    """The search methods of :class:`indexer.store.EmbeddingIndex`."""

    def search(self, queries: Any, k: int, nprobe: int | None = None, allowed_ids: Any = None,
               columns: Sequence[str] | None = None) -> SearchResult:
        """The k nearest stored vectors of each query (queries are normalised here).

        k is clamped to the number of stored vectors. ``nprobe`` overrides the default number of
        inverted lists visited, for IVF indexes only. ``allowed_ids`` restricts the search to those
        ids inside FAISS (an ``IDSelectorBatch``), so a filter never needs a wider search.
        ``columns``: the metadata columns the rows carry (None: all; copying every column of many
        rows costs more than the search on a small index). Returns :class:`SearchResult`.
        """
        with self._lock:
            scores, ids = self._nearest_locked(queries, k, nprobe, allowed_ids)
            rows = result_rows(scores, ids, self._metadata, columns)
        valid = ids >= 0
        return SearchResult([s[v] for s, v in zip(scores, valid)], [i[v] for i, v in zip(ids, valid)], rows)

    def nearest(self, queries: Any, k: int, nprobe: int | None = None, allowed_ids: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` without the metadata rows, for a caller that picks the rows it needs
        itself (one query on the page): (Q, k) scores and ids, best first, id -1 where an
        approximate index found fewer than k."""
        with self._lock:
            return self._nearest_locked(queries, k, nprobe, allowed_ids)

    def _nearest_locked(self, queries: Any, k: int, nprobe: int | None, allowed_ids: Any) -> tuple[np.ndarray, np.ndarray]:
        if int(k) < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        q = self._as_vectors(queries, "queries")
        allowed = None if allowed_ids is None else np.unique(np.asarray(allowed_ids, dtype=np.int64).ravel())
        searchable = self.ntotal if allowed is None else len(allowed)
        k_eff = min(int(k), searchable)
        k_ask = min(self._rerank.candidates(k_eff), searchable)
        if k_eff == 0:
            return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
        checked = None if nprobe is None else self._checked_nprobe(nprobe)
        scores, ids = self._search_locked(q, k_ask, checked, allowed)
        if self._rerank.enabled:
            scores, ids = self._rerank.rerank(q, ids, k_eff, self._metric)
        return scores, ids

    def _search_locked(self, q: np.ndarray, k: int, nprobe: int | None, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        ivf = ivf_of(self._index)
        probes = nprobe if nprobe is not None else (ivf.nprobe if ivf is not None else None)
        if (allowed is None and self._device == "cuda" and k <= GPU_MAX_K  # GPU indexes take no selectors
                and (probes is None or probes <= GPU_MAX_K)):
            gpu = self._gpu.copy_of(self._index)
            if gpu is not None:
                if probes is not None:
                    faiss.GpuParameterSpace().set_index_parameter(gpu, "nprobe", probes)
                return gpu.search(q, k)
        found = search_one_flat(self._index, q, k) if allowed is None else None
        return found if found is not None else search_cpu(self._index, q, k, nprobe, allowed)

    def metadata_of(self, ids: Any, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The metadata rows of these ids, in their order (all NaN for an id no longer stored),
        numbered from 0; only ``columns`` where given."""
        with self._lock:
            return rows_of(self._metadata, np.asarray(ids, dtype=np.int64).ravel(), columns)
