"""What in an index directory is the index's (:mod:`indexer.layout` is the directory itself).

What the index owns carries its mark: every folder it creates holds a ``.fashionnet-index`` file
(each version folder, written before anything else; ``uploads/``; ``model/`` when the index made
it), and its checkpoint copies are named ``fashionnet-index-<checksum>.pt``. Only marked folders,
files with those names and temporary manifests are ever deleted; nothing outside ``IDX`` is touched.
A version folder the committed manifest names is the index's even without a mark (indexes written
before marks existed): a save marks it before it may be removed.

Leftovers are removed by :func:`remove_stale` (after every commit) and :func:`tidy_if_idle` (on a
load that finds no writer busy; it also deletes uploads no row of the live index references). A
folder of other files is refused as a save target (:func:`check_save_target`) unless forced.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Optional

import pandas as pd

from indexer.errors import IndexSaveError
from indexer.layout import (
    LOCK_FILE,
    MANIFEST_FILE,
    MILVUS_LITE_FILE,
    MODEL_DIR,
    TEMP_MANIFEST,
    UPLOADS_DIR,
    VERSION_NAME,
    VERSIONS_DIR,
    WriterLock,
    committed_or_none,
    is_index_dir,
)

MARKER_FILE = ".fashionnet-index"  # in every folder the index created: such a folder is the index's
MODEL_COPY_PREFIX = "fashionnet-index-"
INSIDE_INDEX = "@index/"  # image_relpath prefix of files kept inside the index folder (HTTP uploads)

_MODEL_COPY = re.compile(rf"^{MODEL_COPY_PREFIX}[0-9A-Za-z]+\.pt$")
_MODEL_TEMP = re.compile(rf"^\.{MODEL_COPY_PREFIX}checkpoint\.[0-9A-Za-z_]+\.tmp$")
_UPLOAD_NAME = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{8}$")  # one POST /items (indexer.uploads)
_MARKER_TEXT = "This folder was written by a fashionnet index; the indexer may delete it.\n"

log = logging.getLogger("indexer")


# ---------------------------------------------------------------------------------------- marks


def mark(folder: Path) -> None:
    """Say that ``folder`` is the index's (so it may be deleted when no manifest needs it)."""
    (folder / MARKER_FILE).write_text(_MARKER_TEXT)


def is_marked(folder: Path) -> bool:
    return folder.is_dir() and not folder.is_symlink() and (folder / MARKER_FILE).is_file()


def owned_folder(directory: Path, name: str) -> Path:
    """``directory/name`` for the index to write in: made and marked if missing; an empty unmarked
    one is marked. A folder of other files is refused, so the index never mixes its files in."""
    folder = directory / name
    try:
        folder.mkdir()
        mark(folder)
    except FileExistsError:
        if not is_marked(folder):
            if not folder.is_dir() or folder.is_symlink() or any(folder.iterdir()):
                raise IndexSaveError(f"{folder} is not the index's (it has no {MARKER_FILE} file), so the index does not "
                                     "write there; move it out of the index folder") from None
            mark(folder)
    return folder


def remove_owned(folder: Path) -> None:
    """Delete a marked folder, its mark last, so a crash half-way leaves it marked (or empty)."""
    for entry in folder.iterdir():
        if entry.name == MARKER_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    (folder / MARKER_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


# ------------------------------------------------------------------------------- save targets


def check_save_target(target: Path, force: bool = False) -> None:
    """Refuse, before any work, a target the index cannot be written to without harming other files.

    An index may be (re)written into an existing index directory, a missing directory, one holding
    only the index's own files (:func:`foreign_entries`), or, with ``force``, a directory of other
    files (which are left alone). A ``manifest.json`` that this package did not write is never
    overwritten.
    """
    if target.exists() and not target.is_dir():
        raise IndexSaveError(f"cannot write the index to {target}: it is a file, not a directory")
    if target.is_dir():
        has_manifest = (target / MANIFEST_FILE).exists()
        if has_manifest and not is_index_dir(target):
            raise IndexSaveError(
                f"cannot write the index to {target}: it holds a {MANIFEST_FILE} that is not an index manifest; choose another folder"
            )
        others = [] if has_manifest or force else foreign_entries(target)
        if others:
            shown = ", ".join(others[:5]) + (" ..." if len(others) > 5 else "")
            raise IndexSaveError(
                f"{target} is not empty ({shown}) and is not an index; choose an empty or new folder, or pass "
                "--force to write the index beside those files (they are left untouched)"
            )
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise IndexSaveError(f"cannot write the index to {target}: {existing} is not a writable folder")


def foreign_entries(target: Path) -> list[str]:
    """What in ``target`` the index did not write, as paths relative to it (sorted)."""
    foreign = []
    for entry in sorted(target.iterdir()):
        name = entry.name
        if name in (MANIFEST_FILE, LOCK_FILE, MILVUS_LITE_FILE) or TEMP_MANIFEST.match(name) or (name == UPLOADS_DIR and is_marked(entry)):
            continue
        if name in (VERSIONS_DIR, MODEL_DIR, UPLOADS_DIR) and entry.is_dir() and not entry.is_symlink():
            foreign += [f"{name}/{child.name}" for child in sorted(entry.iterdir()) if not _owned_child(name, child)]
        else:
            foreign.append(name)
    return foreign


def _owned_child(parent: str, child: Path) -> bool:
    if parent == VERSIONS_DIR:
        return bool(VERSION_NAME.match(child.name)) and is_marked(child)
    if parent == MODEL_DIR:
        return child.name == MARKER_FILE or bool(_MODEL_COPY.match(child.name) or _MODEL_TEMP.match(child.name))
    return False


# ---------------------------------------------------------------------------------- leftovers


def remove_stale(directory: Path, manifest: dict) -> list[str]:
    """Delete what this package wrote that ``manifest`` no longer needs: marked version folders other
    than the live and the previous one, temporary manifests, and checkpoint copies named as the
    index names them. The caller holds the writer lock. Returns what was removed (relative names)."""
    keep = {manifest.get("data_dir"), manifest.get("previous_data_dir")}
    removed = []
    versions = directory / VERSIONS_DIR
    if versions.is_dir() and not versions.is_symlink():
        for folder in versions.iterdir():
            relative = f"{VERSIONS_DIR}/{folder.name}"
            if not VERSION_NAME.match(folder.name) or relative in keep or folder.is_symlink() or not folder.is_dir():
                continue
            if is_marked(folder):
                remove_owned(folder)
                removed.append(relative)
            elif not any(folder.iterdir()):  # a save killed before its mark: rmdir deletes only an empty folder
                with contextlib.suppress(OSError):
                    folder.rmdir()
                    removed.append(relative)
    for entry in directory.iterdir():
        if TEMP_MANIFEST.match(entry.name) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    models = directory / MODEL_DIR
    if models.is_dir() and not models.is_symlink():
        keep_models = {(manifest.get("extra") or {}).get("checkpoint_in_index"), manifest.get("previous_model")}
        for copy in models.iterdir():
            stale = _MODEL_COPY.match(copy.name) and f"{MODEL_DIR}/{copy.name}" not in keep_models
            if (stale or _MODEL_TEMP.match(copy.name)) and copy.is_file():
                copy.unlink(missing_ok=True)
                removed.append(f"{MODEL_DIR}/{copy.name}")
    return removed


def tidy_if_idle(directory: Path, manifest: Optional[dict] = None, metadata: Optional[pd.DataFrame] = None) -> list[str]:
    """Recovery on open: if no writer is active, delete a crashed save's leftovers and, given the
    ``metadata`` of the loaded ``manifest``, uploads that no row references. Never waits; does
    nothing in a thread that holds the lock already (its upload may be on its way in)."""
    lock = WriterLock(directory)
    if lock.held_here or not lock.try_acquire():
        return []
    try:
        current = committed_or_none(directory)
        removed = remove_stale(directory, current) if current else []
        if current and manifest is not None and metadata is not None and current.get("data_dir") == manifest.get("data_dir"):
            removed += remove_orphan_uploads(directory, metadata)  # only against the rows committed now
    finally:
        lock.release()
    if removed:
        log.info("removed leftovers of an interrupted save or add in %s: %s", directory, ", ".join(removed))
    return removed


# ------------------------------------------------------------------------------------------ uploads


def upload_files(directory: Path, rows: pd.DataFrame) -> set[str]:
    """The files of ``rows`` that lie in the index's uploads folder, as paths relative to ``directory``."""
    found = set()
    inside = INSIDE_INDEX + UPLOADS_DIR + "/"
    if "image_relpath" in rows:
        relpaths = rows["image_relpath"].dropna().astype(str)
        found |= {r[len(INSIDE_INDEX):] for r in relpaths[relpaths.str.startswith(inside)]}
    if "image_path" in rows:  # rows without image_relpath (an index made without an image root)
        paths = rows["image_path"].dropna().astype(str)
        for base in {str(directory.absolute()), os.path.realpath(directory)}:
            within = paths[paths.str.startswith(base + os.sep + UPLOADS_DIR + os.sep)]
            found |= {Path(p[len(base) + 1:]).as_posix() for p in within}
    return found


def _is_upload_file(directory: Path, relative: str) -> bool:
    """``relative`` names a file in an upload folder of the index's (marked) uploads folder."""
    parts = relative.split("/")
    if len(parts) < 3 or parts[0] != UPLOADS_DIR or not _UPLOAD_NAME.match(parts[1]) or ".." in parts:
        return False
    root = directory / UPLOADS_DIR
    path = directory / relative
    return is_marked(root) and path.is_file() and os.path.realpath(path).startswith(os.path.realpath(root) + os.sep)


def delete_upload_files(directory: Path, relatives: set[str]) -> list[str]:
    """Delete these uploaded files (paths relative to ``directory``) and the folders they leave
    empty; anything that is not a file of the index's uploads is left alone. The caller holds the
    writer lock."""
    removed = []
    root = directory / UPLOADS_DIR
    for relative in sorted(relatives):
        if not _is_upload_file(directory, relative):
            continue
        path = directory / relative
        path.unlink(missing_ok=True)
        removed.append(relative)
        folder = path.parent
        while folder != root and folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    return removed


def remove_orphan_uploads(directory: Path, metadata: pd.DataFrame) -> list[str]:
    """Delete uploaded files that no row of ``metadata`` (the live index's) references: an add that
    was killed before its commit. The caller holds the writer lock."""
    root = directory / UPLOADS_DIR
    if not is_marked(root) or not {"image_path", "image_relpath"} & set(metadata.columns):
        return []
    uploads = [u for u in root.iterdir() if _UPLOAD_NAME.match(u.name) and u.is_dir() and not u.is_symlink()]
    on_disk = {(Path(folder) / name).relative_to(directory).as_posix() for upload in uploads for folder, _, files in os.walk(upload)
               for name in files}
    removed = delete_upload_files(directory, on_disk - referenced_files(directory, metadata, on_disk)) if on_disk else []
    for upload in uploads:  # and folders an interrupted add left empty
        for folder, _, _ in os.walk(upload, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only an empty one
    return removed


def referenced_files(directory: Path, metadata: pd.DataFrame, candidates: set[str]) -> set[str]:
    """Those of ``candidates`` (paths relative to ``directory``) that a row of ``metadata`` names
    (a hashed lookup: this runs on every load, on galleries of any size)."""
    found = set()
    forms = [(metadata.get("image_relpath"), {INSIDE_INDEX + c: c for c in candidates})]
    for base in {str(directory.absolute()), os.path.realpath(directory)}:
        forms.append((metadata.get("image_path"), {base + os.sep + c.replace("/", os.sep): c for c in candidates}))
    for column, names in forms:
        if column is not None:
            found |= {names[str(v)] for v in column[column.isin(list(names))]}
    return found
