"""The crash-safe commit of a new index version: write a marked version folder, fsync it, then
replace ``manifest.json`` (the commit point), and remove what the new manifest no longer needs.

The directory layout is :mod:`indexer.layout`'s, what of it the index owns :mod:`indexer.ownership`'s;
this module joins the two, so neither imports the other.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Callable

from indexer import ownership
from indexer.layout import MANIFEST_FILE, VERSIONS_DIR, committed_or_none, fsync_path, is_version_path


def commit_version(directory: Path, write_data: Callable[[Path], None], make_manifest: Callable[[Path], dict]) -> dict:
    """Write a new version of the index in ``directory`` and make it the live one. The caller holds
    the writer lock.

    ``write_data(folder)`` writes the data files into a fresh version folder; ``make_manifest(folder)``
    returns the manifest for them (checksums included). Returns the committed manifest.
    """
    previous = committed_or_none(directory)
    sequence = int(previous.get("version", 0)) + 1 if previous else 1
    for relative in (previous.get("data_dir"), previous.get("previous_data_dir")) if previous else ():
        # named by the index's own manifest, so the index's: marked, a later save may remove it
        if isinstance(relative, str) and is_version_path(relative) and (directory / relative).is_dir() \
                and not (directory / relative).is_symlink() and not ownership.is_marked(directory / relative):
            ownership.mark(directory / relative)
    versions = directory / VERSIONS_DIR
    versions.mkdir(exist_ok=True)
    folder = versions / f"{sequence:06d}-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    try:
        ownership.mark(folder)
        write_data(folder)
        for entry in folder.iterdir():  # every data file the backend wrote
            if entry.is_file():
                fsync_path(entry)
        fsync_path(folder)
        fsync_path(versions)
        manifest = make_manifest(folder)
        manifest["version"] = sequence
        manifest["data_dir"] = f"{VERSIONS_DIR}/{folder.name}"
        manifest["previous_data_dir"] = previous.get("data_dir") if previous else None
        manifest["previous_model"] = (previous.get("extra") or {}).get("checkpoint_in_index") if previous else None
        temporary = directory / f".{MANIFEST_FILE}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with open(temporary, "w") as f:
                f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, directory / MANIFEST_FILE)  # the commit point
        finally:
            if temporary.exists():
                temporary.unlink()
    except BaseException:
        ownership.remove_owned(folder)
        raise
    fsync_path(directory)
    ownership.remove_stale(directory, manifest)
    return manifest
