"""Reaching Milvus: a server URL, or a Milvus Lite file that this process opens itself.

A Milvus Lite file can be open in one process at a time. So a writer opens it only while it holds
the index's writer lock and lets it go at the end (:func:`session`): concurrent ``indexer add``
runs take turns. A reader (``indexer serve``, the page, ``indexer query``) keeps it open while it
runs; a process that needs the file meanwhile waits for it (``FASHIONNET_MILVUS_WAIT_S``), then
says which file is busy. pymilvus and milvus-lite are imported only here and only when used, so the
FAISS backend runs without them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Iterator

from indexer.errors import IndexLoadError

SERVER_SCHEMES = ("http://", "https://", "tcp://", "grpc://", "unix:")
LITE_SUFFIX = ".db"  # how pymilvus tells a Milvus Lite file from a server
TOKEN_ENV = "MILVUS_TOKEN"  # a server's credentials ("user:password" or an API key); never recorded
WAIT_ENV = "FASHIONNET_MILVUS_WAIT_S"
DEFAULT_WAIT_S = 120.0
_RETRY_S = 0.5

log = logging.getLogger("indexer")


class MilvusUnavailableError(IndexLoadError):
    """A Milvus server or Milvus Lite file cannot be reached or opened."""


def is_server(uri: str) -> bool:
    return str(uri).startswith(SERVER_SCHEMES)


def check_uri(uri: str) -> str:
    """``uri`` as given, refused with a clear message unless it is a server URL or a ``.db`` file path."""
    uri = str(uri)
    if not uri:
        raise ValueError("--milvus-uri is empty: give a server URL (http://host:19530) or a Milvus Lite file (gallery.db)")
    if not is_server(uri) and not uri.endswith(LITE_SUFFIX):
        raise ValueError(f"--milvus-uri {uri}: a Milvus Lite file name ends in {LITE_SUFFIX} (e.g. gallery{LITE_SUFFIX}); "
                         f"a server URL starts with {' or '.join(SERVER_SCHEMES[:2])}")
    return uri


def recorded_uri(uri: str, index_dir: Path) -> str:
    """How the manifest records ``uri``: a Lite file inside the index folder relative to it (so a
    copied folder takes its collection along), any other file absolute, a server URL as given."""
    if is_server(uri):
        return uri
    path = Path(uri).absolute()
    try:
        return path.relative_to(index_dir.absolute()).as_posix()
    except ValueError:
        return str(path)


def resolved_uri(recorded: str, index_dir: Path) -> str:
    """The URI to open for what the manifest recorded (a relative Lite file lies in the index folder)."""
    if is_server(recorded) or Path(recorded).is_absolute():
        return recorded
    return str(index_dir.absolute() / recorded)


# ------------------------------------------------------------------------------------ clients

_clients: dict[str, object] = {}
_guard = threading.Lock()


def _key(uri: str) -> str:
    return uri if is_server(uri) else str(Path(uri).absolute())


def client(uri: str):
    """This process's MilvusClient for ``uri`` (opened once, shared by its threads)."""
    uri = _key(uri)
    with _guard:
        found = _clients.get(uri)
        if found is None:
            found = _clients[uri] = _open(uri)
        return found


def is_open(uri: str) -> bool:
    with _guard:
        return _key(uri) in _clients


def release(uri: str) -> None:
    """Close this process's client of ``uri``; for a Lite file, let other processes open it."""
    uri = _key(uri)
    with _guard:
        found = _clients.pop(uri, None)
    if found is None:
        return
    with contextlib.suppress(Exception):
        found.close()
    if not is_server(uri):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


@contextlib.contextmanager
def session(uri: str) -> Iterator[None]:
    """One piece of work on ``uri``: a client opened during it (by :func:`client`) is released
    after, so a Lite file is free for the next process; one this process held before stays open."""
    held_before = is_open(uri)
    try:
        yield
    finally:
        if not held_before:
            release(uri)


def _open(uri: str):
    # gRPC (under pymilvus) logs a notice on every fork, e.g. of a decoding worker; keep its errors only
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise MilvusUnavailableError("the milvus backend needs pymilvus and milvus-lite: pip install 'fashionnet-search[milvus]'") from None
    if is_server(uri):
        try:
            return MilvusClient(uri=uri, token=os.environ.get(TOKEN_ENV, ""))
        except Exception as e:
            raise MilvusUnavailableError(f"cannot reach the Milvus server at {uri}: {_first_line(e)}") from None
    return _open_lite(MilvusClient, uri)


def _open_lite(milvus_client, uri: str):
    path = Path(uri)
    if not path.parent.is_dir():
        raise MilvusUnavailableError(f"cannot open the Milvus Lite file {uri}: its folder {path.parent} does not exist")
    if path.exists() and not path.is_dir():
        raise MilvusUnavailableError(f"cannot open {uri} as a Milvus Lite file: it is a plain file, not Milvus Lite's folder")
    deadline = time.monotonic() + float(os.environ.get(WAIT_ENV) or DEFAULT_WAIT_S)
    said = False
    while True:
        quiet = logging.getLogger("milvus_lite.server_manager")
        was, quiet.disabled = quiet.disabled, True  # a busy file is expected here: no traceback on stderr
        try:
            return milvus_client(uri=uri)
        except Exception as e:
            problem = _first_line(e)
        finally:
            quiet.disabled = was
        if not _held_by_another_process(path):
            raise MilvusUnavailableError(f"cannot open the Milvus Lite file {uri}: {problem}")
        if time.monotonic() > deadline:
            raise MilvusUnavailableError(
                f"the Milvus Lite file {uri} is open in another process (an `indexer serve`, the page or a query), and "
                "Milvus Lite serves one process at a time: use that server's HTTP API, stop it, or "
                "keep the collection on a Milvus server (--milvus-uri http://HOST:19530)")
        if not said:
            log.warning("waiting for another process that has the Milvus Lite file %s open ...", uri)
            said = True
        time.sleep(_RETRY_S)


def _held_by_another_process(path: Path) -> bool:
    """Whether another process holds Milvus Lite's lock on the file (what makes an open fail)."""
    lock = path / "LOCK"
    if not lock.exists():
        return False
    try:
        import fcntl
    except ImportError:  # Windows: assume busy, and let the wait run out
        return True
    with open(lock, "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return False


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "message", "") or e).strip()
    return text.splitlines()[0] if text else type(e).__name__
