"""Changing a saved index from several processes: locked read-modify-write, removing items, and
merging shards.

Every writer holds the index's writer lock (:mod:`indexer.layout`) from loading the newest saved
version to saving its change, so concurrent ``indexer add`` / ``remove`` runs all land.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, NamedTuple, Sequence

from tqdm.auto import tqdm

from indexer import layout, ownership
from indexer.backends import AnyIndex, backend_of, open_index, writer_session
from indexer.store import EmbeddingIndex

if TYPE_CHECKING:
    from fashionnet.calibration.close_match import MatchReference


@contextmanager
def locked_update(directory: str | os.PathLike, *, expected_model_checksum: str | None = None,
                  expected_dim: int | None = None, device: str = "cpu") -> Iterator[AnyIndex]:
    """Change a saved index safely against other processes: hold the writer lock, load the newest
    version (of either backend, :mod:`indexer.backends`), yield it, and save it on a normal exit if it
    was changed.

    Do slow work (embedding images) before entering, so writers queue only for the change itself.
    """
    directory = Path(directory).absolute()
    layout.read_manifest(directory)  # a clear error for a missing index, before creating a lock file
    with layout.WriterLock(directory):
        index = open_index(directory, expected_model_checksum=expected_model_checksum, expected_dim=expected_dim, device=device)
        with writer_session(index):
            yield index
            if index.unsaved_changes:
                index.save(directory)


class Removal(NamedTuple):
    """What :func:`remove_items` did: images removed per item id (in the order given), and the
    images the index holds afterwards."""

    removed: dict[str, int]
    count: int


def remove_items(directory: str | os.PathLike, item_ids: Iterable[str], reference: MatchReference | None = None,
                 **load_options) -> Removal:
    """Remove every image of these items from the saved index, then delete those images' files that
    live in the index's uploads folder (photos added through the HTTP API). Images elsewhere (a
    shop's own photos) are never deleted. ``load_options`` go to :func:`locked_update`.

    The one rule for ``indexer remove`` and the API's ``DELETE /items``. The files go after the
    commit: a crash in between leaves files no row references, which the next open deletes. With the
    model's held-out ``reference`` the close-match score is fitted again in the same commit: a smaller
    catalogue holds fewer look-alikes.
    """
    directory = Path(directory).absolute()
    layout.read_manifest(directory)  # a clear error for a missing index, before creating a lock file
    removed: dict[str, int] = {}
    with layout.WriterLock(directory):
        with locked_update(directory, **load_options) as index:
            before = index.metadata
            ids = []
            for item in map(str, item_ids):
                found = index.remove_where("item_id", item)
                removed[item] = removed.get(item, 0) + len(found)
                ids += found.tolist()
            if ids and reference is not None:
                from indexer.close_match import record_close_match  # torch comes with it: only when asked

                record_close_match(index, reference)
            gone = ownership.upload_files(directory, before.loc[ids])
            still = ownership.referenced_files(directory, index.metadata, gone) if gone else set()  # a file two rows share stays
            count = index.ntotal
        ownership.delete_upload_files(directory, gone - still)
    return Removal(removed, count)


def merge(
    index_dirs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    expected_model_checksum: str | None = None,
    device: str = "auto",
    force: bool = False,
) -> EmbeddingIndex:
    """Join shard indexes (same model, dimension, metric and factory) into one, saved at ``out_dir``.

    IVF shards are joined list by list (``merge_from``) and must share one trained quantizer, e.g.
    shards made with :meth:`EmbeddingIndex.empty_copy` of one trained index; other indexes are
    joined by adding the shards' stored vectors. Ids are renumbered: shard i's ids are shifted by the
    id space of the shards before it, so the merged metadata is the shards' metadata concatenated
    in order, each row keeping its vector.
    """
    dirs = [Path(d) for d in index_dirs]
    if not dirs:
        raise ValueError("merge needs at least one index directory")
    for shard_dir in dirs:
        if backend_of(layout.read_manifest(shard_dir.absolute())) != "faiss":
            raise ValueError(f"{shard_dir} is a Milvus index: merge joins FAISS shards; the ranks of a Milvus build "
                             "(torchrun) write into one collection, with nothing to merge")
    ownership.check_save_target(Path(out_dir).absolute(), force=force)
    merged = EmbeddingIndex.load(dirs[0], expected_model_checksum=expected_model_checksum, device=device)
    for shard_dir in tqdm(dirs[1:], desc="merging shards", unit="shard", disable=len(dirs) < 3):
        shard = EmbeddingIndex.load(shard_dir, expected_dim=merged.dim, device="cpu")
        merged.append_shard(shard, str(dirs[0]), str(shard_dir))
    merged.extra = {**merged.extra, "merged_from": [str(d.absolute()) for d in dirs]}
    merged.save(out_dir, force=force)
    return merged
