"""Where an index's images and model are, wherever the index has been moved or copied.

A build records the images' common root and each image's path relative to it (``image_relpath``),
and the checkpoint's path, absolute and relative to the index. With ``--copy-model`` the index
carries its checkpoint under ``model/fashionnet-index-<checksum>.pt`` (the manifest records the
path, so copies named ``model/<checksum>.pt`` by earlier builds still load). On opening, each is
looked for in turn:

- images: an ``--image-root`` given now; the recorded absolute path; the recorded root taken
  relative to the index (an index and its images moved together);
- the model: a ``--checkpoint`` given now; the copy inside the index; the recorded absolute path;
  the recorded path relative to the index.

Whichever checkpoint is found, the index still refuses it unless its weights have the checksum
the index was built with.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Optional

from indexer import ownership
from indexer.layout import MODEL_DIR
from indexer.ownership import INSIDE_INDEX, MODEL_COPY_PREFIX


def relative_for_index(paths: Iterable[str], root: Path, index_dir: Path) -> list[str]:
    """Like :func:`relative_to_root`, but a file inside the index folder is recorded relative to the
    index, so it moves with the index whatever happens to the image root."""
    index_dir = index_dir.absolute()
    paths = [Path(p).absolute() for p in paths]
    return [INSIDE_INDEX + p.relative_to(index_dir).as_posix() if index_dir in p.parents else relative_to_root([p], root)[0]
            for p in paths]


def common_root(paths: Iterable[str]) -> Path:
    """The deepest folder holding every one of ``paths`` (absolute)."""
    parents = [str(Path(p).absolute().parent) for p in paths]
    return Path(os.path.commonpath(parents)) if parents else Path.cwd()


def relative_to_root(paths: Iterable[str], root: Path) -> list[str]:
    return [Path(os.path.relpath(Path(p).absolute(), root)).as_posix() for p in paths]


def _relative_or_none(target: Path, start: Path) -> Optional[str]:
    try:
        return Path(os.path.relpath(target, start)).as_posix()
    except ValueError:  # another drive on Windows
        return None


def model_copy_name(model_checksum: str) -> str:
    return f"{MODEL_DIR}/{MODEL_COPY_PREFIX}{model_checksum}.pt"


def copy_model_into(index_dir: Path, checkpoint: Path, model_checksum: str) -> str:
    """Copy the checkpoint into the index (atomically, named by checksum so a rebuild that dies
    half-way never changes the model an existing index uses); returns its path inside the index.
    The caller holds the writer lock, so no tidy-up deletes the copy before a manifest names it."""
    relative = model_copy_name(model_checksum)
    target = index_dir / relative
    if not target.exists():
        index_dir.mkdir(parents=True, exist_ok=True)
        try:
            target.parent.mkdir()
            ownership.mark(target.parent)
        except FileExistsError:  # the user's own model/ folder: the copy goes beside their files, no mark
            pass
        fd, temporary = tempfile.mkstemp(prefix=f".{MODEL_COPY_PREFIX}checkpoint.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(checkpoint, temporary)
            os.replace(temporary, target)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    return relative


def portable_extra(index_dir: Path, image_root: Path, checkpoint: Optional[str], model_in_index: Optional[str]) -> dict:
    """The manifest entries that let a moved index find its images and model."""
    return {
        "image_root": str(image_root),
        "image_root_from_index": _relative_or_none(image_root, index_dir),
        "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None,
        "checkpoint_from_index": _relative_or_none(Path(checkpoint).resolve(), index_dir) if checkpoint else None,
        "checkpoint_in_index": model_in_index,
    }


def find_checkpoint(index_dir: Optional[Path], extra: dict, given: Optional[str]) -> str:
    """The checkpoint to embed queries with (see the module docstring for the order)."""
    if given:
        return given
    tried = []
    candidates = []
    if index_dir is not None and extra.get("checkpoint_in_index"):
        candidates.append(index_dir / extra["checkpoint_in_index"])
    if extra.get("checkpoint"):
        candidates.append(Path(extra["checkpoint"]))
    if index_dir is not None and extra.get("checkpoint_from_index"):
        candidates.append(index_dir / extra["checkpoint_from_index"])
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
        tried.append(str(candidate))
    if not tried:
        raise ValueError("this index records no checkpoint; pass --checkpoint")
    raise ValueError(f"the checkpoint this index was built with is not at {' nor '.join(tried)}; pass --checkpoint "
                     "(or rebuild with --copy-model so the index carries it)")


class ImageLocator:
    """Turns a gallery row's stored image path into the file on this machine."""

    def __init__(self, index_dir: Optional[Path], extra: dict, image_root: Optional[str | os.PathLike] = None):
        self.index_dir = index_dir
        self.override = Path(image_root).expanduser().absolute() if image_root else None
        moved = extra.get("image_root_from_index")
        self.beside_index = (index_dir / moved).resolve() if index_dir is not None and moved else None

    def file(self, image_path: str, relpath: Optional[str]) -> str:
        if not isinstance(relpath, str):  # indexes built before image_relpath existed
            return image_path
        if relpath.startswith(INSIDE_INDEX) and self.index_dir is not None:
            return str(self.index_dir / relpath[len(INSIDE_INDEX):])
        if self.override is not None and not relpath.startswith("../"):  # only images under the root move with it
            return str(self.override / relpath)
        if os.path.exists(image_path):
            return image_path
        if self.beside_index is not None and (self.beside_index / relpath).exists():
            return str(self.beside_index / relpath)
        return image_path
