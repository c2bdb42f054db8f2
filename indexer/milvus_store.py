"""An index whose vectors live in a Milvus collection: the Milvus counterpart of
:class:`indexer.store.EmbeddingIndex`, with the same methods the search engine, the updates and the
API use.

The index folder stays the user's handle. Its manifest (committed as FAISS indexes commit theirs,
:mod:`indexer.commit`) records the backend, the Milvus URI and collection, the model, and which
entities are committed: the build generation, the next key and the keys retired since; its version
folder holds the metadata table. The vectors and the filterable fields are the collection's
(:mod:`indexer.milvus_collection`).

Why changes are safe: entities are written before the manifest that commits them, under keys at or
above the committed next key, which searches leave out. A writer killed half-way leaves only such
entities, and the next writer deletes them before it writes (every writer holds the index's writer
lock, :mod:`indexer.layout`). A removal or a change of metadata retires keys in the manifest it
commits (searches leave them out from then on) and deletes them after. So a search sees the old
images or the new ones, never part of an add.
"""

from __future__ import annotations

import contextlib
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

import fashionnet
from indexer import layout, milvus_connection, ownership
from indexer.commit import commit_version
from indexer.compatibility import check_index_fits_model
from indexer.errors import IndexLoadError, IndexSaveError
from indexer.faiss_tools import unit_rows
from indexer.index_search import SearchResult
from indexer.milvus_collection import GalleryCollection, filter_expression, first_key, model_record, visible_expression
from indexer.result_rows import query_friendly, result_rows, rows_of

KEY_COLUMN = "milvus_key"  # the entity key of each row, kept in the saved table (not shown in results)
INDEX_TYPE = "FLAT"
RESULT_COLUMNS = ("query", "rank", "score", "id")

_uri_overrides: dict[str, str] = {}  # index folder -> where this process reaches its collection


def use_milvus_uri(index_dir: str | os.PathLike, uri: str) -> None:
    """Reach the collection of the index at ``index_dir`` at ``uri`` (a moved server or Lite file)
    in this process, instead of the URI the index recorded."""
    _uri_overrides[str(Path(index_dir).absolute())] = milvus_connection.check_uri(uri)


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class MilvusIndex:
    """A saved index whose vectors are in a Milvus collection; open with :meth:`load`, change
    inside :func:`indexer.updates.locked_update`. Safe to search from several threads."""

    backend = "milvus"
    metric = "ip"
    index_factory = INDEX_TYPE
    device = "cpu"
    nprobe = None
    is_trained = True

    def __init__(self, *, path: Path, uri: str, collection: str, generation: int, metadata: pd.DataFrame, keys: np.ndarray,
                 next_id: int, next_key: int, retired: Sequence[int] = (), dim: int, model_checksum: Optional[str],
                 model_config: Optional[dict], extra: Optional[dict], created_utc: Optional[str] = None, index_id: Optional[str] = None):
        """Use :meth:`load` (or :func:`indexer.milvus_build.build_milvus_index`)."""
        self._path = Path(path).absolute()
        self.uri, self.collection_name, self.generation = uri, collection, int(generation)
        self.index_id = index_id  # the collection's owner record names it (indexer.milvus_build)
        self._metadata = query_friendly(metadata)
        self._keys = pd.Series(np.asarray(keys, np.int64), index=metadata.index)  # id -> entity key in the generation
        self._next_id, self._next_key = int(next_id), int(next_key)
        self._retired = [int(k) for k in retired]  # committed as retired: deleted by the next writer
        self._dim = int(dim)
        self.model_checksum, self.model_config, self.extra = model_checksum, dict(model_config or {}), dict(extra or {})
        self._created_utc = created_utc or _utc_now()
        self._changes = 0
        self._tidied = False  # leftovers of killed writers deleted (the first change does it)
        self._collection: Optional[GalleryCollection] = None
        self._lock = threading.RLock()

    # --------------------------------------------------------------------------------- properties

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def flip_average(self) -> bool:
        return bool(self.extra.get("flip_average", False))

    @property
    def built_by(self) -> dict:
        return {"model_checksum": self.model_checksum, "model_config": self.model_config, "embedding_dim": self.dim, "extra": self.extra}

    @property
    def ntotal(self) -> int:
        return len(self._metadata)

    def __len__(self) -> int:
        return self.ntotal

    @property
    def ids(self) -> np.ndarray:
        return self._metadata.index.to_numpy(np.int64)

    @property
    def metadata(self) -> pd.DataFrame:
        with self._lock:
            return self._metadata.copy()

    @property
    def unsaved_changes(self) -> int:
        return self._changes

    @property
    def model(self) -> dict:
        return model_record(self.model_checksum, self.dim, self.flip_average, self.model_config, self.extra.get("input_side"))

    def collection(self) -> GalleryCollection:
        """The collection, through this process's client of its URI (opened and checked once per client)."""
        client = milvus_connection.client(self.uri)
        opened = self._collection
        if opened is None or opened.raw_client is not client:
            opened = self._collection = GalleryCollection.open(client, self.collection_name, self.uri)
        return opened

    def connect(self) -> "MilvusIndex":
        """Open the collection now and check that it holds this index's model's embeddings (a
        search would otherwise find out at its first query)."""
        self.collection().check_model(self.model, f"the model the index at {self._path} records")
        return self

    # ------------------------------------------------------------------------------------ search

    @staticmethod
    def filter_expression(clothes_type=None, category=None, attributes=(), familiar_only=False) -> Optional[str]:
        """The search filters as a Milvus expression on the collection's scalar fields."""
        return filter_expression(clothes_type, category, attributes, familiar_only)

    def nearest(self, queries: Any, k: int, nprobe: Optional[int] = None, allowed_ids: Any = None,
                where: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
        """(Q, k) scores and ids of the committed images nearest each query, best first (id -1
        where fewer pass): ``where`` is a filter expression (:meth:`filter_expression`) and
        ``allowed_ids`` a list of ids, both applied inside Milvus."""
        if int(k) < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if nprobe is not None:
            raise ValueError("nprobe applies to FAISS IVF indexes only; this index is a Milvus collection")
        q = unit_rows(queries, self.dim, "queries")
        with self._lock:
            expression = visible_expression(self.generation, self._next_key, self._retired)
            searchable = self.ntotal
        if allowed_ids is not None:
            allowed = np.unique(np.asarray(allowed_ids, dtype=np.int64).ravel())
            searchable = min(searchable, len(allowed))
            expression += f" and id in [{', '.join(map(str, allowed.tolist()))}]"
        if where:
            expression += f" and ({where})"
        limit = min(int(k), searchable)
        if limit == 0:
            return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
        return self.collection().search(q, limit, expression)

    def search(self, queries: Any, k: int, nprobe: Optional[int] = None, allowed_ids: Any = None,
               columns: Optional[Sequence[str]] = None, where: Optional[str] = None) -> SearchResult:
        """:meth:`nearest` with the metadata rows, as :meth:`indexer.store.EmbeddingIndex.search` returns them."""
        scores, ids = self.nearest(queries, k, nprobe, allowed_ids, where)
        with self._lock:
            rows = result_rows(scores, ids, self._metadata, columns)
        valid = ids >= 0
        return SearchResult([s[v] for s, v in zip(scores, valid)], [i[v] for i, v in zip(ids, valid)], rows)

    def metadata_of(self, ids: Any, columns: Optional[Sequence[str]] = None) -> pd.DataFrame:
        with self._lock:
            return rows_of(self._metadata, np.asarray(ids, dtype=np.int64).ravel(), columns)

    def export_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, ids) of the committed images, as stored."""
        with self._lock:
            ids, keys = self.ids, self._keys.to_numpy(np.int64)
        return self.collection().vectors_of(first_key(self.generation) + keys), ids

    # ---------------------------------------------------------------------------------- changes

    def _begin_change(self) -> GalleryCollection:
        """The collection to write to, once this thread holds the index's writer lock; the first
        change deletes what killed writers left (keys not committed) and the keys retired last time."""
        if not layout.WriterLock(self._path).held_here:
            raise RuntimeError(f"change the Milvus index at {self._path} inside indexer.updates.locked_update, "
                               "which holds its writer lock")
        collection = self.collection()
        if not self._tidied:
            start = first_key(self.generation)
            collection.delete(f"pk >= {start + self._next_key} and pk < {first_key(self.generation + 1)}")
            if self._retired:
                collection.delete(f"pk in [{', '.join(str(start + k) for k in self._retired)}]")
            self._retired, self._tidied = [], True
        return collection

    def add(self, vectors: Any, metadata: Optional[pd.DataFrame] = None, show_progress: bool = True) -> np.ndarray:
        """Write vectors with one metadata row each (not searchable by others until :meth:`save`
        commits them); returns their new ids."""
        x = unit_rows(vectors, self.dim, "vectors")
        rows = pd.DataFrame(index=range(len(x))) if metadata is None else metadata.reset_index(drop=True)
        if len(rows) != len(x):
            raise ValueError(f"metadata has {len(rows)} rows for {len(x)} vectors; need one row per vector")
        bad = [c for c in rows.columns if not isinstance(c, str) or c in RESULT_COLUMNS or c == KEY_COLUMN]
        if bad:
            raise ValueError(f"metadata column names must be strings other than {(*RESULT_COLUMNS, KEY_COLUMN)}; got {bad}")
        with self._lock:
            collection = self._begin_change()
            ids = np.arange(self._next_id, self._next_id + len(x), dtype=np.int64)
            keys = np.arange(self._next_key, self._next_key + len(x), dtype=np.int64)
            collection.write(first_key(self.generation) + keys, ids, x, rows)
            rows.index = pd.Index(ids, name="id")
            self._metadata = query_friendly(pd.concat([self._metadata, rows]) if len(self._metadata) else rows)
            self._keys = pd.concat([self._keys, pd.Series(keys, index=rows.index)])
            self._next_id, self._next_key = self._next_id + len(x), self._next_key + len(x)
            self._changes += 1
        return ids

    def set_metadata(self, ids: Sequence[int], columns: dict[str, Sequence[Any]]) -> None:
        """Replace the metadata values of ``ids`` (as :meth:`indexer.store.EmbeddingIndex.set_metadata`).
        Their entities are written again under new keys and the old keys retired, so the filter
        fields change in the same commit as the table."""
        ids = np.asarray(ids, dtype=np.int64)
        bad = [c for c in columns if not isinstance(c, str) or c in RESULT_COLUMNS or c in ("image_path", "item_id", KEY_COLUMN)]
        if bad:
            raise ValueError(f"these metadata columns cannot be set: {bad}")
        with self._lock:
            unknown = ids[~np.isin(ids, self.ids)]
            if len(unknown):
                raise KeyError(f"no vectors with ids {unknown[:10].tolist()}")
            collection = self._begin_change()
            table = self._metadata.copy()
            for column, values in columns.items():
                if column not in table:
                    table[column] = pd.array([pd.NA] * len(table), dtype="Int64") if column == "clothes_type" else None
                table.loc[ids, column] = pd.Series(list(values), index=ids, dtype=table[column].dtype)
            old = self._keys.loc[ids].to_numpy(np.int64)
            vectors = collection.vectors_of(first_key(self.generation) + old)
            fresh = np.arange(self._next_key, self._next_key + len(ids), dtype=np.int64)
            collection.write(first_key(self.generation) + fresh, ids, vectors, table.loc[ids].reset_index(drop=True))
            keys = self._keys.copy()
            keys.loc[ids] = fresh
            self._metadata, self._keys = query_friendly(table), keys
            self._next_key += len(ids)
            self._retired += old.tolist()
            self._changes += 1

    def remove_ids(self, ids: Iterable[int]) -> int:
        """Retire these ids (unknown ids are ignored); returns how many were removed."""
        wanted = np.unique(np.asarray(list(ids) if not hasattr(ids, "__array__") else ids, dtype=np.int64).ravel())
        with self._lock:
            present = wanted[np.isin(wanted, self.ids)]
            if len(present) == 0:
                return 0
            self._begin_change()
            self._retired += self._keys.loc[present].tolist()
            self._metadata = self._metadata.drop(index=present)
            self._keys = self._keys.drop(index=present)
            self._changes += 1
        return int(len(present))

    def remove_where(self, column: str, value: Any) -> np.ndarray:
        with self._lock:
            if column not in self._metadata.columns:
                raise ValueError(f"no metadata column {column!r}; columns are {list(self._metadata.columns)}")
            ids = self._metadata.index[(self._metadata[column] == value).fillna(False).to_numpy(bool)].to_numpy(np.int64)
        self.remove_ids(ids)
        return ids

    # ------------------------------------------------------------------------------ save / load

    def save(self, directory: str | os.PathLike, force: bool = False) -> Path:
        """Commit the change: a new manifest naming the written entities and retiring the removed
        ones (the commit point), then delete the retired entities."""
        target = Path(directory).absolute()
        if target != self._path:
            raise IndexSaveError(f"a Milvus index is saved to its own folder {self._path}, not to {target}; "
                                 "build another index to copy it")
        ownership.check_save_target(target, force=force)
        try:
            with layout.WriterLock(target), self._lock:
                commit_version(target, self._write_table, self._manifest)
                self._changes = 0
                if self._retired:
                    with contextlib.suppress(Exception):  # the next writer deletes them if this fails
                        start = first_key(self.generation)
                        self.collection().delete(f"pk in [{', '.join(str(start + k) for k in self._retired)}]")
        except IndexSaveError:
            raise
        except Exception as e:
            raise IndexSaveError(f"could not save the index to {target}: {e}. Any index previously there is unchanged.") from e
        return target

    def _write_table(self, folder: Path) -> None:
        table = self._metadata.copy()
        table[KEY_COLUMN] = self._keys.loc[table.index].to_numpy(np.int64)
        table.reset_index().to_parquet(folder / layout.METADATA_FILE, index=False)

    def _manifest(self, folder: Path) -> dict:
        table = folder / layout.METADATA_FILE
        return {
            "format_version": layout.MILVUS_FORMAT_VERSION, "backend": "milvus", "package_version": fashionnet.__version__,
            "saved_utc": _utc_now(), "created_utc": self._created_utc, "embedding_dim": self.dim, "metric": self.metric,
            "index_factory": INDEX_TYPE, "index_type": f"Milvus collection ({INDEX_TYPE}, inner product)", "count": self.ntotal,
            "next_id": self._next_id, "model_checksum": self.model_checksum, "model_config": self.model_config,
            "metadata_columns": [str(c) for c in self._metadata.columns], "extra": self.extra,
            "files": {layout.METADATA_FILE: {"bytes": table.stat().st_size, "sha256": layout.sha256_file(table)}},
            "milvus": {"uri": milvus_connection.recorded_uri(self.uri, self._path), "collection": self.collection_name,
                       "index_id": self.index_id, "generation": self.generation, "next_key": self._next_key, "retired": self._retired},
        }

    @classmethod
    def load(cls, directory: str | os.PathLike, expected_model_checksum: Optional[str] = None, expected_dim: Optional[int] = None,
             device: str = "auto") -> "MilvusIndex":
        """Open the Milvus index at ``directory`` (the manifest and metadata table; the collection
        is reached at the first search or change, or by :meth:`connect`). Raises IndexLoadError
        for a missing or damaged index, IndexMismatchError for another model."""
        directory = Path(directory).absolute()
        manifest = layout.read_manifest(directory)
        milvus = manifest.get("milvus") or {}
        if manifest.get("backend") != "milvus" or not milvus.get("collection"):
            raise IndexLoadError(f"the index at {directory} is not a Milvus index (its backend is {manifest.get('backend') or 'faiss'})")
        check_index_fits_model(directory, manifest, model_checksum=expected_model_checksum, embedding_dim=expected_dim)
        table = layout.data_folder(directory, manifest) / layout.METADATA_FILE
        layout.check_data_file(table, manifest, directory)
        try:
            metadata = pd.read_parquet(table).set_index("id")
        except Exception as e:
            raise IndexLoadError(f"{table} cannot be read: {e}") from None
        if len(metadata) != manifest["count"] or KEY_COLUMN not in metadata:
            raise IndexLoadError(f"index at {directory} is inconsistent: {table.name} holds {len(metadata)} rows, the manifest says "
                                 f"{manifest['count']}; rebuild it")
        keys = metadata.pop(KEY_COLUMN).to_numpy(np.int64)
        ownership.tidy_if_idle(directory, manifest, metadata)
        uri = _uri_overrides.get(str(directory)) or milvus_connection.resolved_uri(milvus["uri"], directory)
        return cls(path=directory, uri=uri, collection=milvus["collection"], generation=milvus["generation"], metadata=metadata,
                   keys=keys, next_id=manifest["next_id"], next_key=milvus["next_key"], retired=milvus.get("retired") or (),
                   dim=manifest["embedding_dim"], model_checksum=manifest.get("model_checksum"),
                   model_config=manifest.get("model_config"), extra=manifest.get("extra"), created_utc=manifest.get("created_utc"),
                   index_id=milvus.get("index_id"))

    def info(self) -> dict[str, Any]:
        """Summary for ``indexer info``: size, where the collection is, the model."""
        with self._lock:
            info = {
                "path": str(self._path), "backend": "milvus", "count": self.ntotal, "dim": self.dim, "metric": self.metric,
                "index_factory": INDEX_TYPE, "index_type": f"Milvus collection ({INDEX_TYPE}, inner product)",
                "is_trained": True, "nlist": None, "nprobe": None, "device": self.device, "next_id": self._next_id,
                "model_checksum": self.model_checksum, "model_config": self.model_config, "created_utc": self._created_utc,
                "package_version": fashionnet.__version__, "metadata_columns": [str(c) for c in self._metadata.columns],
                "milvus_uri": self.uri, "milvus_collection": self.collection_name, "milvus_generation": self.generation,
                "bytes_per_vector_estimate": float(4 * self.dim), "memory_bytes_estimate": int(4 * self.dim * self.ntotal),
                "rerank": {"mode": "none"}, "extra": self.extra,
            }
        return info

    def __repr__(self) -> str:
        return f"MilvusIndex({self.collection_name!r} at {self.uri}, dim={self.dim}, count={self.ntotal})"
