"""An index directory on disk: versioned data folders behind one atomically replaced manifest.

    IDX/
      manifest.json                  the commit point: names the live version folder and its checksums
      versions/000007-1f2e3d4c/      index.faiss + metadata.parquet of the live version
      versions/000006-9a8b7c6d/      the version before, kept so a reader that has just read the old
                                     manifest can finish loading it
      .indexer.lock                  held by whoever changes the index (build, add, remove, merge)
      model/fashionnet-index-<checksum>.pt   the checkpoint the index carries (indexer.portable)
      uploads/<upload>/<item>/       photos added through the HTTP API (indexer.uploads)
      milvus.db/                     a Milvus index's collection, kept in Milvus Lite (indexer.milvus_store)
      anything else                  the user's: never read, moved or deleted

What the index owns (its marks, removing what no manifest needs, the uploads tidy-up) is
:mod:`indexer.ownership`'s; the commit of a new version, which uses both, :mod:`indexer.commit`'s.

A save writes a complete new version folder and fsyncs it, then replaces ``manifest.json`` with
``os.replace``. A crash at any moment therefore leaves either the old or the new manifest, and each
names a complete folder. Marked folders no manifest names (left by a crashed save) are deleted by
the next writer, or by the next load that can take the lock at once; that load also deletes
uploaded photos no row of the live index references (an upload whose add never committed).

A manifest without ``data_dir`` (a development layout with the data files beside it) still loads;
its files are never deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import faiss
import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

import fashionnet
from indexer.errors import IndexLoadError
from indexer.faiss_tools import describe_index, ivf_of, stored_ids

# 2: the metadata may hold a shop's catalogue columns (indexer.catalogue_metadata), which filters read
# before the model's predictions. An index without them is still written as 1, readable by older
# versions; one with them as 2, which older versions refuse rather than filter by predictions alone.
FORMAT_VERSION = 2
CATALOGUE_FORMAT_VERSION = 2
# 3: the vectors live in a Milvus collection the manifest names (indexer.milvus_store); FAISS
# indexes stay at 1 or 2, and versions before it refuse a Milvus index instead of missing its files.
MILVUS_FORMAT_VERSION = 3
CATALOGUE_ATTRIBUTES_COLUMN = "catalogue_attributes"  # the shop's own attribute names (indexer.catalogue_metadata)
CATALOGUE_ONLY_COLUMNS = (CATALOGUE_ATTRIBUTES_COLUMN, "catalogue_fields")
INDEX_FILE = "index.faiss"
METADATA_FILE = "metadata.parquet"
MANIFEST_FILE = "manifest.json"
DATA_FILES = (INDEX_FILE, METADATA_FILE)
VERSIONS_DIR = "versions"
MODEL_DIR = "model"  # a checkpoint copy the index carries (indexer.portable)
UPLOADS_DIR = "uploads"  # photos added through the HTTP API
MILVUS_LITE_FILE = "milvus.db"  # a Milvus index's collection, when kept in a Milvus Lite file inside the index
LOCK_FILE = ".indexer.lock"
METRIC_NAMES = ("ip", "l2")
REQUIRED_MANIFEST_KEYS = ("format_version", "embedding_dim", "metric", "index_factory", "count", "next_id", "files")

VERSION_NAME = re.compile(r"^\d{6,}-[0-9a-f]{8}$")
TEMP_MANIFEST = re.compile(r"^\.manifest\.json\.[0-9a-f]{8}\.tmp$")
_WAIT_NOTICE_S = 1.0

log = logging.getLogger("indexer")


# ---------------------------------------------------------------------------------------- files


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    """Flush a file's or a directory's entry to disk (directories: so a rename inside survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

# ----------------------------------------------------------------------------------------- lock

_locks: dict[str, FileLock] = {}
_locks_guard = threading.Lock()


class WriterLock:
    """The index's writer lock: one process (and one thread) at a time changes an index.

    Re-entrant within a thread, so a save inside :func:`indexer.store.locked_update` takes it again
    without deadlocking. Says on the log when it has to wait for another writer.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        key = str(directory / LOCK_FILE)
        with _locks_guard:
            if key not in _locks:
                # preserve_lock_file: deleting it on release would let two processes lock two different files
                _locks[key] = FileLock(key, thread_local=True, preserve_lock_file=True)
            self._lock = _locks[key]

    def __enter__(self) -> "WriterLock":
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=_WAIT_NOTICE_S)
        except Timeout:
            log.warning("waiting for another process that is changing the index at %s ...", self.directory)
            self._lock.acquire()
        return self

    @property
    def held_here(self) -> bool:
        """Whether this thread holds the lock already (it is re-entrant)."""
        return self._lock.is_locked

    def try_acquire(self) -> bool:
        """Take the lock only if it is free now (and the directory is writable); True when taken."""
        try:
            self._lock.acquire(timeout=0)
            return True
        except (Timeout, OSError):
            return False

    def release(self) -> None:
        self._lock.release()

    def __exit__(self, *exc) -> None:
        self._lock.release()


# ------------------------------------------------------------------------------------- manifest


def read_manifest(directory: Path) -> dict:
    """The committed manifest of ``directory``, checked for the keys every index has."""
    if not directory.exists():
        raise IndexLoadError(f"no index at {directory}: the directory does not exist")
    if not directory.is_dir():
        raise IndexLoadError(f"no index at {directory}: it is a file, not an index directory")
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise IndexLoadError(f"{directory} is not a complete index: {MANIFEST_FILE} is missing")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexLoadError(f"{path} cannot be read: {e}") from None
    if not isinstance(manifest, dict):
        raise IndexLoadError(f"{path} is not a manifest (expected a JSON object)")
    missing = [k for k in REQUIRED_MANIFEST_KEYS if k not in manifest]
    if missing:
        raise IndexLoadError(f"{path} lacks {missing}")
    newest = MILVUS_FORMAT_VERSION if manifest.get("backend") == "milvus" else FORMAT_VERSION
    if not isinstance(manifest["format_version"], int) or manifest["format_version"] > newest:
        raise IndexLoadError(
            f"{path} has format version {manifest['format_version']!r}; this fashionnet "
            f"({fashionnet.__version__}) reads up to {newest}"
        )
    if manifest["metric"] not in METRIC_NAMES:
        raise IndexLoadError(f"{path} names an unknown metric {manifest['metric']!r}")
    data_dir = manifest.get("data_dir")
    if data_dir is not None and (not isinstance(data_dir, str) or not is_version_path(data_dir)):
        raise IndexLoadError(f"{path} names an invalid data folder {data_dir!r}")
    return manifest


def is_version_path(relative: str) -> bool:
    parts = relative.split("/")
    return len(parts) == 2 and parts[0] == VERSIONS_DIR and bool(VERSION_NAME.match(parts[1]))


def data_folder(directory: Path, manifest: dict) -> Path:
    """Where the manifest's data files live: its version folder, or the directory itself (old layout)."""
    return directory / manifest["data_dir"] if manifest.get("data_dir") else directory


def check_data_file(path: Path, manifest: dict, directory: Path) -> None:
    """The file exists and matches the size and checksum the manifest recorded."""
    if not path.is_file():
        raise IndexLoadError(f"{directory} is not a complete index: {path.relative_to(directory)} is missing")
    recorded = manifest["files"].get(path.name) if isinstance(manifest["files"], dict) else None
    if not recorded:
        raise IndexLoadError(f"{directory / MANIFEST_FILE} records no checksum for {path.name}")
    if path.stat().st_size != recorded.get("bytes") or sha256_file(path) != recorded.get("sha256"):
        raise IndexLoadError(f"{path} is damaged: its size or checksum differs from the one recorded when it was saved; rebuild the index")


def build_manifest(folder: Path, index: faiss.Index, data_files: tuple[str, ...], **fields) -> dict:
    """The manifest of a version ``folder`` holding ``index`` (its FAISS index) and ``data_files``
    (with sizes and checksums); ``fields`` (metric, index_factory, next_id, extra, ...) go in as given."""
    index_bytes = (folder / INDEX_FILE).stat().st_size
    ivf = ivf_of(index)
    return {
        "format_version": FORMAT_VERSION,
        "package_version": fashionnet.__version__,
        "faiss_version": faiss.__version__,
        "saved_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "embedding_dim": int(index.d),
        "index_type": describe_index(index),
        "count": int(index.ntotal),
        "nprobe": None if ivf is None else int(ivf.nprobe),
        "bytes_per_vector": index_bytes / index.ntotal if index.ntotal else None,
        "files": {name: {"bytes": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)} for name in data_files},
        **fields,
    }


def format_version_for(columns) -> int:
    """The oldest format that holds a table with these metadata columns."""
    return CATALOGUE_FORMAT_VERSION if set(map(str, columns)) & set(CATALOGUE_ONLY_COLUMNS) else 1


def is_index_dir(directory: Path) -> bool:
    """True when ``directory`` holds a manifest this package wrote."""
    try:
        read_manifest(directory)
        return True
    except IndexLoadError:
        return False


def committed_or_none(directory: Path) -> Optional[dict]:
    try:
        return read_manifest(directory)
    except IndexLoadError:
        return None


# ------------------------------------------------------------------------------ reading and checks


def read_index_files(directory: Path, manifest: dict) -> tuple[faiss.Index, pd.DataFrame]:
    """The FAISS index and metadata a manifest names, checked against its checksums and each other."""
    folder = data_folder(directory, manifest)
    index_path = folder / INDEX_FILE
    check_data_file(index_path, manifest, directory)
    try:
        index = faiss.read_index(str(index_path))
    except RuntimeError as e:
        raise IndexLoadError(f"{index_path} is damaged and cannot be read by FAISS ({str(e).splitlines()[0]})") from None
    if index.d != manifest["embedding_dim"]:
        raise IndexLoadError(f"{index_path} holds {index.d}-d vectors but {directory / MANIFEST_FILE} says {manifest['embedding_dim']}")

    metadata_path = folder / METADATA_FILE
    check_data_file(metadata_path, manifest, directory)
    try:
        metadata = pd.read_parquet(metadata_path)
    except Exception as e:
        raise IndexLoadError(f"{metadata_path} cannot be read: {e}") from None
    if "id" not in metadata.columns:
        raise IndexLoadError(f"{metadata_path} has no 'id' column")
    metadata = metadata.set_index("id")

    count = manifest["count"]
    if not index.ntotal == len(metadata) == count:
        raise IndexLoadError(
            f"index at {directory} is inconsistent: {INDEX_FILE} holds {index.ntotal} vectors, "
            f"{METADATA_FILE} {len(metadata)} rows, {MANIFEST_FILE} says {count}; rebuild it"
        )
    try:
        stored = np.sort(stored_ids(index))
    except TypeError as e:
        raise IndexLoadError(f"{index_path}: {e}") from None
    if not np.array_equal(stored, np.sort(metadata.index.to_numpy(np.int64))):
        raise IndexLoadError(f"index at {directory} is inconsistent: the ids in {INDEX_FILE} and {METADATA_FILE} differ")
    return index, metadata


def live_data_file(directory: str | os.PathLike, name: str) -> Path:
    """Path of a data file (``index.faiss``, ``metadata.parquet``) of the version now committed."""
    directory = Path(directory)
    return data_folder(directory, read_manifest(directory)) / name
