"""Which store holds an index's vectors: FAISS files in the index folder (the default), or a Milvus
collection (:mod:`indexer.milvus_store`), as the index's manifest records.

Everything that opens a saved index opens it here, so the commands, the API, the page and the
updates all follow the index's own record; ``--backend`` given to a command only checks it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional, Union

from indexer import layout, milvus_connection
from indexer.backend_names import BACKENDS, DEFAULT_BACKEND
from indexer.errors import IndexLoadError
from indexer.milvus_store import MilvusIndex, use_milvus_uri
from indexer.store import EmbeddingIndex

AnyIndex = Union[EmbeddingIndex, MilvusIndex]


def backend_of(manifest: dict) -> str:
    return manifest.get("backend") or DEFAULT_BACKEND


def check_backend(backend: Optional[str]) -> Optional[str]:
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def open_index(directory: str | os.PathLike, *, expected_model_checksum: Optional[str] = None, expected_dim: Optional[int] = None,
               device: str = "auto", backend: Optional[str] = None, milvus_uri: Optional[str] = None) -> AnyIndex:
    """The saved index at ``directory``, of the backend its manifest records. ``backend``, when
    given, must be that one; ``milvus_uri`` reaches a Milvus index's collection somewhere other
    than the URI it recorded (for the rest of this process)."""
    directory = Path(directory).absolute()
    if use_backend(directory, backend, milvus_uri) == "milvus":
        return MilvusIndex.load(directory, expected_model_checksum=expected_model_checksum, expected_dim=expected_dim, device=device)
    return EmbeddingIndex.load(directory, expected_model_checksum=expected_model_checksum, expected_dim=expected_dim, device=device)


def use_backend(directory: str | os.PathLike, backend: Optional[str] = None, milvus_uri: Optional[str] = None) -> str:
    """The backend the index at ``directory`` records, checked against ``backend`` when given;
    ``milvus_uri`` is where this process reaches a Milvus index's collection from now on."""
    directory = Path(directory).absolute()
    found = backend_of(layout.read_manifest(directory))
    if check_backend(backend) is not None and backend != found:
        raise IndexLoadError(f"the index at {directory} keeps its vectors in {found}, not {backend}; "
                             f"drop --backend, or give --backend {found}")
    if milvus_uri and found != "milvus":
        raise ValueError(f"--milvus-uri applies to Milvus indexes; the index at {directory} keeps its vectors in FAISS files")
    if milvus_uri:
        use_milvus_uri(directory, milvus_uri)
    return found


@contextlib.contextmanager
def writer_session(index: AnyIndex) -> Iterator[None]:
    """Around one writer's change: a Milvus Lite file opened for it is let go after, so the next
    process can open it (:mod:`indexer.milvus_connection`). Nothing to do for FAISS."""
    if isinstance(index, MilvusIndex):
        with milvus_connection.session(index.uri):
            yield
    else:
        yield
