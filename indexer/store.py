"""A FAISS index of L2-normalised embeddings with a metadata row per vector, saved as a directory.

Searching is :mod:`indexer.index_search`'s; saving, loading and describing :mod:`indexer.index_files`'s;
the files, their crash-safe commit and the writer lock are :mod:`indexer.layout`'s; changing a
saved index from several processes is :mod:`indexer.updates`'s; FAISS's class zoo is
:mod:`indexer.faiss_tools`'s.

Ids are handed out in increasing order and never reused, so a removed vector's id cannot come
back pointing at another row. Flat (and HNSW, ...) indexes get their ids from an ``IndexIDMap2``
wrapper; IVF indexes store ids in their inverted lists themselves (an ID map on top of an IVF index
would break ``remove_ids``, which does not renumber IVF entries). Where FAISS sees a GPU, searches
run on a GPU copy; k above FAISS's GPU limit falls back to the CPU index.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import faiss
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from indexer.errors import IndexMismatchError
from indexer.faiss_tools import (
    FLAT_FACTORY,
    unit_rows,
    GpuSearchCopy,
    METRICS,
    describe_index,
    export_id_mapped_vectors,
    ivf_of,
    merge_ivf,
    native_ivf,
    new_faiss_index,
    remove_ids,
    resolve_faiss_device,
    trained_arrays,
)
from indexer.index_files import SavedIndex
from indexer.index_search import GPU_MAX_K, IndexSearch, SearchResult
from indexer.rerank import Reranker
from indexer.result_rows import query_friendly

__all__ = ["EmbeddingIndex", "SearchResult", "GPU_MAX_K", "RESULT_COLUMNS"]

# Columns search() adds to each result row; metadata may not use them.
RESULT_COLUMNS = ("query", "rank", "score", "id")
_ADD_BATCH = 65536  # vectors per FAISS add call, so big builds show progress


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class EmbeddingIndex(IndexSearch, SavedIndex):
    """FAISS index of L2-normalised vectors + a metadata row per vector, saved as a directory.

    Build with :meth:`create` (then :meth:`train` for IVF/PQ factories), fill with :meth:`add`,
    query with :meth:`search`, persist with :meth:`save`, reopen with :meth:`load`.
    All public methods are safe to call from several threads (one lock per index).
    """

    def __init__(
        self,
        index: faiss.Index,
        *,
        metric: str,
        index_factory: str,
        metadata: pd.DataFrame | None = None,
        next_id: int = 0,
        model_checksum: str | None = None,
        model_config: dict | None = None,
        extra: dict | None = None,
        created_utc: str | None = None,
        device: str = "auto",
        path: Path | None = None,
        rerank: Reranker | None = None,
    ):
        """Use :meth:`create` or :meth:`load`; this wraps an already built FAISS index."""
        self._index = index
        self._metric = metric
        self._factory = index_factory
        self._metadata = query_friendly(metadata) if metadata is not None else pd.DataFrame(index=pd.Index([], dtype=np.int64, name="id"))
        self._next_id = int(next_id)
        self.model_checksum = model_checksum
        self.model_config = dict(model_config or {})
        self.extra = dict(extra or {})
        self._created_utc = created_utc or _utc_now()
        self._device = resolve_faiss_device(device)
        self._path = path
        self._rerank = rerank or Reranker(dim=index.d)  # exact re-ranking of candidates, if asked for
        self._changes = 0  # add/remove/train calls since load or save
        self._lock = threading.Lock()
        self._gpu = GpuSearchCopy()  # made on the first GPU search after a change
        for name, value in (("model_config", self.model_config), ("extra", self.extra)):
            try:
                json.dumps(value)
            except TypeError as e:
                raise ValueError(f"{name} must be JSON-serialisable (it goes into the manifest): {e}") from None

    # ------------------------------------------------------------------------------- construction

    @classmethod
    def create(
        cls,
        dim: int,
        index_factory: str | None = None,
        metric: str = "ip",
        *,
        model_checksum: str | None = None,
        model_config: dict | None = None,
        extra: dict | None = None,
        device: str = "auto",
        rerank: str = "none",
        rerank_factor: int | None = None,
    ) -> "EmbeddingIndex":
        """An empty index for ``dim``-dimensional vectors.

        ``index_factory`` None (or "Flat") gives exact inner-product search; otherwise any FAISS
        factory string ("IVF4096,Flat", "IVF4096,PQ32", "HNSW32", ...), built for ``metric``
        ("ip" inner product, "l2" squared distance). Factories that need training must be trained
        with :meth:`train` before :meth:`add`. ``rerank`` "exact" re-scores ``rerank_factor`` x k
        candidates from a memory-mapped vectors file (:mod:`indexer.rerank`). ``model_checksum`` / ``model_config`` / ``extra``
        (e.g. input_side, data_root, build_command) are stored in the manifest.
        """
        if int(dim) < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {tuple(METRICS)}, got {metric!r}")
        index = new_faiss_index(int(dim), index_factory, metric)
        return cls(
            index,
            metric=metric,
            index_factory=index_factory or FLAT_FACTORY,
            model_checksum=model_checksum,
            model_config=model_config,
            extra=extra,
            device=device,
            rerank=Reranker(rerank, rerank_factor, int(dim)),
        )

    def empty_copy(self) -> "EmbeddingIndex":
        """An empty index with the same trained structure and model info, e.g. to build shards
        that :func:`merge` can join list by list (IVF shards must share one trained quantizer)."""
        with self._lock:
            index = faiss.clone_index(self._index)
        index.reset()
        return EmbeddingIndex(
            index,
            metric=self._metric,
            index_factory=self._factory,
            model_checksum=self.model_checksum,
            model_config=self.model_config,
            extra=self.extra,
            device=self._device,
            rerank=self._rerank.empty_copy(),
        )

    # --------------------------------------------------------------------------------- properties

    backend = "faiss"  # where the vectors live (indexer.backends; the other is indexer.milvus_store's)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def metric(self) -> str:
        return self._metric

    @property
    def index_factory(self) -> str:
        return self._factory

    @property
    def device(self) -> str:
        """'cuda' when searches run on a GPU copy, else 'cpu'."""
        return self._device

    @property
    def flip_average(self) -> bool:
        """Whether the embeddings average each photo with its mirror image (recorded by the build;
        indexes from before it was recorded hold one view)."""
        return bool(self.extra.get("flip_average", False))

    @property
    def built_by(self) -> dict:
        """What the index recorded of the model that built it, under its manifest's keys
        (:func:`indexer.compatibility.check_index_fits_model` reads them)."""
        return {"model_checksum": self.model_checksum, "model_config": self.model_config, "embedding_dim": self.dim, "extra": self.extra}

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def __len__(self) -> int:
        return self.ntotal

    @property
    def ids(self) -> np.ndarray:
        """Ids of the stored vectors, in metadata order."""
        return self._metadata.index.to_numpy(np.int64)

    @property
    def metadata(self) -> pd.DataFrame:
        """A copy of the metadata table, indexed by id."""
        with self._lock:
            return self._metadata.copy()

    @property
    def nprobe(self) -> int | None:
        """Default number of inverted lists an IVF search visits (None for non-IVF indexes)."""
        ivf = ivf_of(self._index)
        return None if ivf is None else int(ivf.nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        ivf = ivf_of(self._index)
        if ivf is None:
            raise ValueError(f"nprobe applies to IVF indexes only; this one is {self._factory!r}")
        with self._lock:
            ivf.nprobe = self._checked_nprobe(value)
            self._changes += 1
            self._gpu.drop()

    # --------------------------------------------------------------------------------- validation

    def _as_vectors(self, vectors: Any, what: str = "vectors") -> np.ndarray:
        return unit_rows(vectors, self.dim, what)

    def _checked_nprobe(self, nprobe: int) -> int:
        ivf = ivf_of(self._index)
        if ivf is None:
            raise ValueError(f"nprobe applies to IVF indexes only; this one is {self._factory!r}")
        if int(nprobe) < 1:
            raise ValueError(f"nprobe must be at least 1, got {nprobe}")
        return min(int(nprobe), int(ivf.nlist))

    @staticmethod
    def _checked_metadata(metadata: pd.DataFrame | None, n: int) -> pd.DataFrame:
        if metadata is None:
            return pd.DataFrame(index=range(n))
        if not isinstance(metadata, pd.DataFrame):
            raise TypeError(f"metadata must be a pandas DataFrame, got {type(metadata).__name__}")
        if len(metadata) != n:
            raise ValueError(f"metadata has {len(metadata)} rows for {n} vectors; need one row per vector")
        bad = [c for c in metadata.columns if not isinstance(c, str) or c in RESULT_COLUMNS]
        if bad:
            raise ValueError(f"metadata column names must be strings other than {RESULT_COLUMNS}; got {bad}")
        return metadata.reset_index(drop=True)

    # ------------------------------------------------------------------------------ train / add

    def train(self, vectors: Any, max_train: int = 100_000, seed: int = 0) -> None:
        """Train the index (IVF coarse quantizer, PQ codebooks) on at most ``max_train`` vectors
        drawn at random from ``vectors``. Does nothing for indexes that need no training."""
        if hasattr(vectors, "detach"):
            vectors = vectors.detach().cpu().numpy()
        vectors = np.asarray(vectors)
        if vectors.ndim == 2 and len(vectors) > max_train:  # sample first: normalising copies
            pick = np.sort(np.random.default_rng(seed).choice(len(vectors), size=int(max_train), replace=False))
            vectors = vectors[pick]
        x = self._as_vectors(vectors, "training vectors")
        ivf = ivf_of(self._index)
        if ivf is not None and len(x) < ivf.nlist:
            raise ValueError(f"{self._factory!r} needs at least nlist={ivf.nlist} training vectors (39 x nlist advised), got {len(x)}")
        with self._lock:
            if self._index.ntotal > 0:
                raise ValueError("the index already holds vectors; train it before adding any")
            self._index.train(x)
            self._changes += 1
            self._gpu.drop()

    def add(self, vectors: Any, metadata: pd.DataFrame | None = None, show_progress: bool = True) -> np.ndarray:
        """Add vectors (normalised here) with one metadata row each; returns their new int64 ids."""
        x = self._as_vectors(vectors)
        rows = self._checked_metadata(metadata, len(x))
        with self._lock:
            if not self._index.is_trained:
                raise ValueError(f"the {self._factory!r} index is not trained yet: call train() before add()")
            ids = np.arange(self._next_id, self._next_id + len(x), dtype=np.int64)
            starts = range(0, len(x), _ADD_BATCH)
            added = 0
            try:
                for start in tqdm(starts, desc="adding vectors", unit="batch", disable=not show_progress or len(starts) < 4):
                    self._index.add_with_ids(x[start : start + _ADD_BATCH], ids[start : start + _ADD_BATCH])
                    added = min(start + _ADD_BATCH, len(x))
            except BaseException:
                if added:
                    self._remove_from_faiss(ids[:added])  # leave no half-added batches behind
                raise
            self._rerank.add(ids, x)
            rows.index = pd.Index(ids, name="id")
            # Concatenating with an empty frame would drop or warn about dtypes; skip it.
            self._metadata = query_friendly(pd.concat([self._metadata, rows]) if len(self._metadata) else rows)
            self._next_id += len(x)
            self._changes += 1
            self._gpu.drop()
        return ids

    def set_metadata(self, ids: Sequence[int], columns: dict[str, Sequence[Any]]) -> None:
        """Replace the metadata values of ``ids``: one value per id for each of ``columns`` (a new
        column starts empty for the other rows), e.g. a shop's corrected category."""
        ids = np.asarray(ids, dtype=np.int64)
        bad = [c for c in columns if not isinstance(c, str) or c in RESULT_COLUMNS or c in ("image_path", "item_id")]
        if bad:
            raise ValueError(f"these metadata columns cannot be set: {bad}")
        with self._lock:
            unknown = ids[~np.isin(ids, self._metadata.index.to_numpy())]
            if len(unknown):
                raise KeyError(f"no vectors with ids {unknown[:10].tolist()}")
            table = self._metadata.copy()  # searches in flight keep reading the old table
            for column, values in columns.items():
                if column not in table:
                    table[column] = pd.array([pd.NA] * len(table), dtype="Int64") if column == "clothes_type" else None
                table.loc[ids, column] = pd.Series(list(values), index=ids, dtype=table[column].dtype)
            self._metadata = query_friendly(table)
            self._changes += 1

    # ----------------------------------------------------------------------------------- remove

    def remove_ids(self, ids: Iterable[int]) -> int:
        """Remove vectors by id (unknown ids are ignored); returns how many were removed."""
        wanted = np.unique(np.asarray(list(ids) if not hasattr(ids, "__array__") else ids, dtype=np.int64).ravel())
        with self._lock:
            present = wanted[np.isin(wanted, self._metadata.index.to_numpy())]
            if len(present) == 0:
                return 0
            self._remove_from_faiss(present)
            self._metadata = self._metadata.drop(index=present)
            self._changes += 1
            self._gpu.drop()
        return int(len(present))

    def remove_where(self, column: str, value: Any) -> np.ndarray:
        """Remove every vector whose metadata ``column`` equals ``value`` (e.g. an item_id)."""
        with self._lock:
            if column not in self._metadata.columns:
                raise ValueError(f"no metadata column {column!r}; columns are {list(self._metadata.columns)}")
            ids = self._metadata.index[(self._metadata[column] == value).fillna(False).to_numpy(bool)].to_numpy(np.int64)
        self.remove_ids(ids)
        return ids

    def _remove_from_faiss(self, ids: np.ndarray) -> None:
        try:
            removed = remove_ids(self._index, ids)  # also readies fast-scan lists for later adds
        except RuntimeError as e:
            if "not implemented" not in str(e):
                raise
            removed = self._rebuild_without(ids)  # e.g. HNSW cannot delete: rebuild from the kept vectors
        if removed != len(ids):
            raise RuntimeError(f"FAISS removed {removed} of {len(ids)} vectors; index and metadata disagree")

    def _rebuild_without(self, ids: np.ndarray) -> int:
        vectors, stored = export_id_mapped_vectors(self._index)
        keep = ~np.isin(stored, ids)
        fresh = faiss.clone_index(self._index)
        fresh.reset()  # keeps trained parts (codebooks), drops vectors and ids
        if keep.any():
            fresh.add_with_ids(np.ascontiguousarray(vectors[keep]), stored[keep])
        self._index = fresh
        return int((~keep).sum())

    def append_shard(self, shard: "EmbeddingIndex", own_name: str = "the index", shard_name: str = "the shard") -> None:
        """Append every vector and row of ``shard``, its ids shifted past this index's id space.
        Refuses a shard of another model, metric or factory, or an IVF shard trained separately."""
        self._check_mergeable(shard, own_name, shard_name)
        with self._lock:
            offset = self._next_id
            self._rerank.append(shard._rerank, offset, shard.ids)  # first: it may refuse the shard
            ivf = native_ivf(self._index)
            if ivf is not None:
                merge_ivf(ivf, native_ivf(shard._index), offset)
                self._index.ntotal = ivf.ntotal  # a wrapping IndexPreTransform keeps its own count
            elif shard.ntotal:
                vectors, ids = export_id_mapped_vectors(shard._index)
                self._index.add_with_ids(vectors, ids + offset)
            rows = shard.metadata
            rows.index = pd.Index(rows.index.to_numpy(np.int64) + offset, name="id")
            parts = [frame for frame in (self._metadata, rows) if len(frame)]
            self._metadata = query_friendly(pd.concat(parts)) if parts else self._metadata
            self._next_id = offset + shard._next_id
            self._created_utc = _utc_now()
            self._changes += 1
            self._gpu.drop()

    def _check_mergeable(self, shard: "EmbeddingIndex", first: str, other: str) -> None:
        if shard.model_checksum != self.model_checksum:
            raise IndexMismatchError(
                f"cannot merge: {other} was built by model {shard.model_checksum or '(unrecorded)'}, "
                f"{first} by {self.model_checksum or '(unrecorded)'}; rebuild the shards with one model"
            )
        if shard.flip_average != self.flip_average:
            said = {True: "with", False: "without"}
            raise IndexMismatchError(f"cannot merge: {other} was embedded {said[shard.flip_average]} flip averaging, "
                                     f"{first} {said[self.flip_average]}; rebuild the shards with one setting")
        if shard.metric != self.metric or shard.index_factory != self.index_factory:
            raise IndexMismatchError(
                f"cannot merge: {other} is {shard.index_factory!r}/{shard.metric}, {first} is {self.index_factory!r}/{self.metric}"
            )
        if native_ivf(self._index) is not None:
            same = all(np.array_equal(a, b) for a, b in zip(trained_arrays(self._index), trained_arrays(shard._index)))
            if not same:
                raise IndexMismatchError(
                    f"cannot merge IVF shards {first} and {other}: they were trained separately (different coarse "
                    "quantizer or codebooks); build shards from one trained index (EmbeddingIndex.empty_copy)"
                )

    def export_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, ids) as stored (reconstructed, so lossy for PQ codes); e.g. a brute-force reference."""
        with self._lock:
            return export_id_mapped_vectors(self._index)

    def __repr__(self) -> str:
        return f"EmbeddingIndex({describe_index(self._index)}, dim={self.dim}, count={self.ntotal}, device={self._device!r})"
