"""Photos uploaded through the HTTP API's ``POST /items``, kept inside the index directory."""

from __future__ import annotations

import io
import os
import re
import secrets
import time
from pathlib import Path
from typing import Optional

from indexer import layout, ownership
from indexer.layout import UPLOADS_DIR

# decoded format -> the suffix the indexer's folder scan recognises
FORMAT_SUFFIXES = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif"}


def safe_file_name(client_name: Optional[str], suffix: str, taken: set[str]) -> str:
    """A file name made from the client's: its last path part, letters, digits, ``._-`` only, no
    leading dot, with the suffix of the decoded format; unique among ``taken``."""
    base = re.split(r"[\\/]", client_name or "")[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:80] or "image"
    name, n = f"{stem}{suffix}", 1
    while name.lower() in taken:
        n += 1
        name = f"{stem}-{n}{suffix}"
    taken.add(name.lower())
    return name


def real(path) -> str:
    """A path with links resolved, to compare the paths this module wrote with those the indexer reports."""
    return os.path.realpath(path)


def image_format_suffix(data: bytes) -> Optional[str]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return FORMAT_SUFFIXES.get(img.format or "")


class UploadStore:
    """Files uploaded through POST /items, kept inside the index directory.

    One upload is saved as ``uploads/<upload>/<item_id>/<safe name>``: the indexer takes an image's
    item id from the first folder under the folder it is given, so adding ``uploads/<upload>``
    gives each image the requested item id and embeds only this upload's files.

    Save and add while holding :meth:`lock`: a file in the (marked) uploads folder that no committed
    row names is then an add that died, and the next open of the index deletes it
    (:func:`indexer.ownership.remove_orphan_uploads`); removing an item deletes its files
    (:func:`indexer.updates.remove_items`).
    """

    def __init__(self, index_dir: Path):
        self.index_dir = index_dir.absolute()
        self.root = self.index_dir / UPLOADS_DIR

    def lock(self) -> layout.WriterLock:
        """The index's writer lock, to hold from saving an upload until its add is committed."""
        return layout.WriterLock(self.index_dir)

    def new_upload(self) -> Path:
        ownership.owned_folder(self.index_dir, UPLOADS_DIR)  # made and marked, or refused if it holds other files
        folder = self.root / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"
        folder.mkdir()
        return folder

    def save(self, folder: Path, item_id: str, files: list[tuple[str, bytes]]) -> tuple[dict[str, str], list[dict]]:
        """Check each file decodes, then write it; returns {saved path: client name} and the refused."""
        from fashionnet.data.images import ImageLoadError, load_image

        saved, refused, taken = {}, [], set()
        for client_name, data in files:
            try:
                load_image(data, source=client_name)
                suffix = image_format_suffix(data)
            except ImageLoadError as exc:
                refused.append({"file": client_name, "problem": exc.problem})
                continue
            target = folder / item_id / safe_file_name(client_name, suffix or ".png", taken)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.resolve().parent != (folder / item_id).resolve():  # cannot happen with a safe name; never write elsewhere
                raise ValueError(f"{client_name!r} is not a usable file name")
            if suffix:
                target.write_bytes(data)
            else:  # a format the folder scan would not pick up: store the decoded pixels as PNG
                load_image(data, source=client_name).save(target, format="PNG")
            saved[real(target)] = client_name
        return saved, refused

    def discard(self, folder: Path, keep: set[str]) -> None:
        """Delete this upload's files that were not added, and its folder if nothing is left."""
        for path in sorted(folder.rglob("*"), reverse=True):
            if path.is_file() and real(path) not in keep:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
