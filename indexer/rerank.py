"""Re-ranking a compressed index's candidates with their full (float32) vectors read from a
memory-mapped file, so the vectors used for re-ranking cost disk, not RAM.

A compressed index (IVF-PQ, ...) proposes ``factor x k`` candidates per query; :meth:`Reranker.rerank`
recomputes their scores from the stored vectors and keeps the best k. The vectors live in the
index's version folder beside ``index.faiss``:

    rerank_ids.npy       int64 ids, ascending (ids are handed out in increasing order, never reused)
    rerank_vectors.npy   one float32 row per id

All are opened with ``numpy.load(mmap_mode="r")``. Vectors added since the last save are held in
RAM until the next save rewrites the files (from the ids the index still holds, so removed vectors
are dropped) and reopens them mapped.
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

from indexer.errors import IndexLoadError

RERANK_MODES = ("none", "exact")
# indexes saved with these still say so; 8-bit rows lost recall and time to float32 ones (docs/experiments/tried_and_removed.md)
RETIRED_MODES = ("sq8",)
DEFAULT_FACTOR = 10
IDS_FILE = "rerank_ids.npy"
VECTORS_FILE = "rerank_vectors.npy"
_CHUNK = 65_536  # rows per write step
_QUERY_CHUNK = 64  # queries re-ranked at once (bounds the gathered candidate block)


def check_rerank(mode: str | None, factor: int | None = None) -> tuple[str, int]:
    """(mode, factor) checked: mode one of RERANK_MODES, factor an integer >= 1."""
    mode = "none" if mode is None else mode
    if mode not in RERANK_MODES:
        raise ValueError(f"rerank must be one of {', '.join(RERANK_MODES)}; got {mode!r}")
    factor = DEFAULT_FACTOR if factor is None else factor
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"rerank factor must be a whole number of at least 1 (candidates per result); got {factor!r}")
    return mode, int(factor)


class Reranker:
    """The re-ranking vectors of one index: a mapped file from the last save + vectors added since."""

    def __init__(self, mode: str | None = "none", factor: int | None = None, dim: int = 0):
        self.mode, self.factor = check_rerank(mode, factor)
        self.dim = int(dim)
        self._ids = np.empty(0, np.int64)  # ascending, mapped after a save or load
        self._rows: np.ndarray = np.empty((0, self.dim), np.float32)
        self._new_ids: list[np.ndarray] = []
        self._new_rows: list[np.ndarray] = []  # float32, in RAM until the next save

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    @property
    def files(self) -> tuple[str, ...]:
        """The data files a save writes for this re-ranker."""
        return (IDS_FILE, VECTORS_FILE) if self.enabled else ()

    @property
    def rows(self) -> np.ndarray:
        """The mapped vector rows of the last save (a numpy.memmap once saved or loaded)."""
        return self._rows

    def settings(self) -> dict:
        """What the manifest records."""
        return {"mode": self.mode, "factor": self.factor}

    def empty_copy(self) -> "Reranker":
        return Reranker(self.mode, self.factor, self.dim)

    # ------------------------------------------------------------------------------ contents

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Keep (normalised, float32) vectors of newly added ids until the next save."""
        if self.enabled and len(ids):
            self._new_ids.append(np.asarray(ids, np.int64).copy())
            self._new_rows.append(np.asarray(vectors, np.float32).copy())

    def append(self, other: "Reranker", offset: int, ids: np.ndarray) -> None:
        """Add ``other``'s vectors for its ``ids``, shifted by ``offset`` (merging a shard)."""
        if self.enabled and len(ids):
            if not other.enabled:
                raise ValueError("cannot merge a shard saved without rerank vectors into an index that re-ranks")
            ids = np.sort(np.asarray(ids, np.int64))
            self.add(ids + offset, other.vectors(ids))

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """float32 vectors of ``ids`` (each must be stored)."""
        ids = np.asarray(ids, np.int64)
        out = np.empty((len(ids), self.dim), np.float32)
        pos = np.searchsorted(self._ids, ids)
        pos_ok = np.minimum(pos, max(len(self._ids) - 1, 0))
        saved = (pos < len(self._ids)) & (self._ids[pos_ok] == ids) if len(self._ids) else np.zeros(len(ids), bool)
        if saved.any():
            order = np.argsort(pos[saved], kind="stable")  # read the mapped file in ascending order
            where = np.flatnonzero(saved)[order]
            out[where] = self._rows[pos[saved][order]]
        if not saved.all():
            new_ids, new_rows = self._pending()
            want = ids[~saved]
            at = np.minimum(np.searchsorted(new_ids, want), max(len(new_ids) - 1, 0))
            if not len(new_ids) or not np.array_equal(new_ids[at], want):
                raise KeyError("the re-ranker holds no vector for some candidate ids; the index and its rerank file disagree")
            out[~saved] = new_rows[at]
        return out

    def _pending(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids ascending, rows) added since the last save, joined into one array each."""
        if len(self._new_ids) != 1:
            ids = np.concatenate(self._new_ids) if self._new_ids else np.empty(0, np.int64)
            rows = np.concatenate(self._new_rows) if self._new_rows else np.empty((0, self.dim), np.float32)
            if len(ids) > 1 and not (np.diff(ids) > 0).all():
                order = np.argsort(ids, kind="stable")
                ids, rows = ids[order], rows[order]
            self._new_ids, self._new_rows = [ids], [rows]
        return self._new_ids[0], self._new_rows[0]

    # -------------------------------------------------------------------------------- search

    def candidates(self, k: int) -> int:
        """How many candidates to ask the index for, to return k."""
        return k * self.factor if self.enabled else k

    def rerank(self, queries: np.ndarray, ids: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the best k of each query's candidate ``ids`` (-1 = none), rescored
        from the stored vectors: inner product for "ip", squared distance for "l2"."""
        queries = np.ascontiguousarray(queries, np.float32)
        valid = ids >= 0
        positions = self._saved_positions(ids, valid)
        if (positions[valid] >= 0).all():
            scores = self._scores_of_saved(queries, np.where(valid, positions, 0), metric)
        else:  # vectors added since the last save are among the candidates
            scores = np.empty(ids.shape, np.float32)
            for start in range(0, len(queries), _QUERY_CHUNK):
                q, cand, ok = queries[start : start + _QUERY_CHUNK], ids[start : start + _QUERY_CHUNK], valid[start : start + _QUERY_CHUNK]
                unique, inverse = np.unique(cand[ok], return_inverse=True)
                gathered = np.zeros(cand.shape + (self.dim,), np.float32)
                gathered[ok] = self.vectors(unique)[inverse.ravel()]
                if metric == "ip":
                    scores[start : start + len(q)] = np.einsum("qkd,qd->qk", gathered, q)
                else:
                    diff = gathered - q[:, None, :]
                    scores[start : start + len(q)] = np.einsum("qkd,qkd->qk", diff, diff)
        sign = -1.0 if metric == "ip" else 1.0  # sort ascending on sign x score
        keyed = np.where(valid, sign * scores, np.inf)
        n = min(k, keyed.shape[1])
        top = np.argpartition(keyed, n - 1, axis=1)[:, :n] if n < keyed.shape[1] else np.tile(np.arange(n), (len(keyed), 1))
        top = np.take_along_axis(top, np.argsort(np.take_along_axis(keyed, top, axis=1), axis=1, kind="stable"), axis=1)
        out_scores = np.full((len(queries), k), -np.inf if metric == "ip" else np.inf, np.float32)
        out_ids = np.full((len(queries), k), -1, np.int64)
        out_scores[:, :n] = np.take_along_axis(scores, top, axis=1)
        out_ids[:, :n] = np.where(np.take_along_axis(valid, top, axis=1), np.take_along_axis(ids, top, axis=1), -1)
        out_scores[out_ids < 0] = -np.inf if metric == "ip" else np.inf
        return out_scores, out_ids

    def _saved_positions(self, ids: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Row of each id in the mapped file; -1 where it is not there (invalid or added since)."""
        if not len(self._ids):
            return np.full(ids.shape, -1, np.int64)
        first, n = int(self._ids[0]), len(self._ids)
        if int(self._ids[-1]) - first + 1 == n:  # no gaps (nothing removed before the save): rows in id order
            pos = ids - first
            return np.where(valid & (pos >= 0) & (pos < n), pos, -1)
        unique, inverse = np.unique(ids, return_inverse=True)  # sorted keys: a faster search of the mapped ids
        pos = np.searchsorted(self._ids, unique)
        clipped = np.minimum(pos, n - 1)
        found = (pos < n) & (np.asarray(self._ids[clipped]) == unique)
        return np.where(valid, np.where(found, clipped, -1)[inverse.reshape(ids.shape)], -1)

    def _scores_of_saved(self, queries: np.ndarray, positions: np.ndarray, metric: str) -> np.ndarray:
        """Scores of the mapped rows at ``positions`` (nq, k') for each query, computed by FAISS
        straight from the mapped file."""
        nq, width = positions.shape
        positions = np.ascontiguousarray(positions, np.int64)
        scores = np.empty((nq, width), np.float32)
        by_idx = faiss.fvec_inner_products_by_idx if metric == "ip" else faiss.fvec_L2sqr_by_idx
        by_idx(faiss.swig_ptr(scores), faiss.swig_ptr(queries), faiss.swig_ptr(self._rows), faiss.swig_ptr(positions),
               self.dim, nq, width)
        return scores

    # ---------------------------------------------------------------------------- save / load

    def write(self, folder: Path, keep_ids: np.ndarray) -> None:
        """Write the vectors of ``keep_ids`` (the ids the index holds) into ``folder``, fsynced."""
        if not self.enabled:
            return
        keep = np.sort(np.asarray(keep_ids, np.int64))
        np.save(folder / IDS_FILE, keep)
        rows = np.lib.format.open_memmap(folder / VECTORS_FILE, mode="w+", dtype=np.float32, shape=(len(keep), self.dim))
        for start in range(0, len(keep), _CHUNK):
            chunk = keep[start : start + _CHUNK]
            rows[start : start + len(chunk)] = self.vectors(chunk)
        rows.flush()
        del rows
        for name in self.files:
            fd = os.open(folder / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def open_saved(self, folder: Path, manifest: dict | None = None) -> None:
        """Map the files in ``folder`` (just written, or named by ``manifest``) and drop the
        in-RAM vectors they now hold."""
        if not self.enabled:
            return
        for name in self.files:
            path = folder / name
            recorded = ((manifest or {}).get("files") or {}).get(name)
            if not path.is_file() or (manifest is not None and not recorded):
                raise IndexLoadError(f"{folder} is not a complete index: the rerank file {name} is missing or unrecorded")
            if recorded and path.stat().st_size != recorded.get("bytes"):
                raise IndexLoadError(f"{path} is damaged: its size differs from the one recorded when it was saved; rebuild the index")
        try:
            ids = np.load(folder / IDS_FILE, mmap_mode="r")
            rows = np.load(folder / VECTORS_FILE, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise IndexLoadError(f"the rerank files in {folder} cannot be read: {e}") from None
        if rows.shape != (len(ids), self.dim) or rows.dtype != np.float32:
            raise IndexLoadError(f"{folder / VECTORS_FILE} holds {rows.dtype} {rows.shape}, expected {len(ids)} x {self.dim} float32")
        self._ids, self._rows = ids, rows
        self._new_ids, self._new_rows = [], []

    @classmethod
    def for_manifest(cls, folder: Path, manifest: dict, ids: np.ndarray) -> "Reranker":
        """The re-ranker a saved index records (none for indexes saved without one), checked to
        hold a vector for every id of the index."""
        settings = manifest.get("rerank") or {}
        if settings.get("mode") in RETIRED_MODES:
            raise IndexLoadError(f"{folder}: this index re-ranks with 8-bit ({settings['mode']}) vectors, which this version no "
                                 "longer reads; rebuild it with --rerank exact")
        try:
            reranker = cls(settings.get("mode", "none"), settings.get("factor"), manifest["embedding_dim"])
        except ValueError as e:
            raise IndexLoadError(f"{folder}: the manifest's rerank settings are invalid: {e}") from None
        reranker.open_saved(folder, manifest)
        if reranker.enabled and not np.array_equal(np.asarray(reranker._ids), np.sort(np.asarray(ids, np.int64))):
            raise IndexLoadError(f"index at {folder} is inconsistent: the ids in {IDS_FILE} and the index differ")
        return reranker
