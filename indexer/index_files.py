"""Saving, loading and describing an :class:`indexer.store.EmbeddingIndex`.

The files, their crash-safe commit and the writer lock are :mod:`indexer.layout`'s; what of the
directory is the index's, and tidying a crashed save's leftovers, :mod:`indexer.ownership`'s.
:class:`SavedIndex` is a part of ``EmbeddingIndex``: it uses the index's FAISS index, metadata,
lock and re-ranker.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, TypeVar

import faiss

import fashionnet
from indexer import layout, ownership
from indexer.commit import commit_version
from indexer.compatibility import check_index_fits_model
from indexer.errors import IndexLoadError, IndexSaveError
from indexer.faiss_tools import bytes_per_vector, describe_index, ivf_of
from indexer.layout import INDEX_FILE, METADATA_FILE
from indexer.rerank import Reranker

_LOAD_ATTEMPTS = 5  # a load that races a save re-reads the manifest this many times

T = TypeVar("T", bound="SavedIndex")


class SavedIndex:
    """The save, load and info methods of :class:`indexer.store.EmbeddingIndex`."""

    def _manifest(self, folder: Path) -> dict:
        return layout.build_manifest(
            folder, self._index, (INDEX_FILE, METADATA_FILE, *self._rerank.files), created_utc=self._created_utc,
            model_checksum=self.model_checksum, model_config=self.model_config, metric=self._metric,
            index_factory=self._factory, next_id=self._next_id, rerank=self._rerank.settings(),
            metadata_columns=[str(c) for c in self._metadata.columns], extra=self.extra,
            format_version=layout.format_version_for(self._metadata.columns))

    def _write_data(self, folder: Path) -> None:
        faiss.write_index(self._index, str(folder / INDEX_FILE))  # always the CPU index
        self._metadata.reset_index().to_parquet(folder / METADATA_FILE, index=False)
        self._rerank.write(folder, self.ids)  # re-ranking vectors (indexer.rerank), if any

    @property
    def unsaved_changes(self) -> int:
        """How many add/remove/train calls changed the index since it was loaded or last saved."""
        return self._changes

    def save(self, directory: str | os.PathLike, force: bool = False) -> Path:
        """Commit the index to ``directory`` atomically and return its path.

        A crash at any point leaves the previous index (or none, for a new directory) or the new
        one, never a mix (:mod:`indexer.layout`). Other files in ``directory`` are never touched; a
        directory of other files is refused unless ``force``.
        """
        target = Path(directory).absolute()
        ownership.check_save_target(target, force=force)
        try:
            with layout.WriterLock(target), self._lock:
                manifest = commit_version(target, self._write_data, self._manifest)
                self._rerank.open_saved(target / manifest["data_dir"])  # map the new file
                self._changes = 0
        except IndexSaveError:
            raise
        except Exception as e:
            raise IndexSaveError(f"could not save the index to {target}: {e}. Any index previously there is unchanged.") from e
        self._path = target
        return target

    @classmethod
    def load(
        cls: type[T],
        directory: str | os.PathLike,
        expected_model_checksum: str | None = None,
        expected_dim: int | None = None,
        device: str = "auto",
    ) -> T:
        """Open a saved index, checking it is complete, undamaged and built by the expected model.

        Raises IndexLoadError for a missing or damaged directory, file or manifest and for index /
        metadata disagreements; IndexMismatchError when the model checksum or dimension differ.
        A load that races a save simply reads the version committed when it looks again; leftovers
        of a crashed save or add (:func:`indexer.ownership.tidy_if_idle`) are cleaned up when no writer is busy.
        """
        directory = Path(directory).absolute()
        for attempt in range(_LOAD_ATTEMPTS):
            manifest = layout.read_manifest(directory)
            check_index_fits_model(directory, manifest, model_checksum=expected_model_checksum, embedding_dim=expected_dim)
            try:
                index, metadata = layout.read_index_files(directory, manifest)
                rerank = Reranker.for_manifest(layout.data_folder(directory, manifest), manifest, metadata.index)
                break
            except (IndexLoadError, OSError):
                if attempt + 1 == _LOAD_ATTEMPTS or layout.read_manifest(directory) == manifest:
                    raise  # not a concurrent save: the index really is damaged
        ownership.tidy_if_idle(directory, manifest, metadata)
        return cls(
            index,
            metric=manifest["metric"],
            index_factory=manifest["index_factory"],
            metadata=metadata,
            next_id=manifest["next_id"],
            model_checksum=manifest.get("model_checksum"),
            model_config=manifest.get("model_config"),
            extra=manifest.get("extra"),
            created_utc=manifest.get("created_utc"),
            device=device,
            path=directory,
            rerank=rerank,
        )

    # ------------------------------------------------------------------------------------- info

    def info(self) -> dict[str, Any]:
        """Summary for ``indexer info``: size, structure, model, memory estimate."""
        with self._lock:
            per_vector = bytes_per_vector(self._index)
            ivf = ivf_of(self._index)
            info = {
                "path": str(self._path) if self._path else None,
                "backend": "faiss",
                "count": self.ntotal,
                "dim": self.dim,
                "metric": self._metric,
                "index_factory": self._factory,
                "index_type": describe_index(self._index),
                "is_trained": self.is_trained,
                "nlist": int(ivf.nlist) if ivf is not None else None,
                "nprobe": int(ivf.nprobe) if ivf is not None else None,
                "device": self._device,
                "next_id": self._next_id,
                "model_checksum": self.model_checksum,
                "model_config": self.model_config,
                "created_utc": self._created_utc,
                "package_version": fashionnet.__version__,
                "metadata_columns": [str(c) for c in self._metadata.columns],
                "bytes_per_vector_estimate": round(per_vector, 1),
                "rerank": self._rerank.settings(),
                "memory_bytes_estimate": int(per_vector * self.ntotal),
                "extra": self.extra,
            }
        if self._path is not None:
            with contextlib.suppress(IndexLoadError, OSError):
                info["index_file_bytes"] = layout.live_data_file(self._path, INDEX_FILE).stat().st_size
        return info
