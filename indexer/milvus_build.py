"""Building a Milvus index: the gallery embedded in chunks, each chunk written into the collection
as soon as it is embedded, by one process or by every rank of a torchrun (:mod:`indexer.distributed_build`).

A build writes a new generation of keys (:mod:`indexer.milvus_collection`), so the index it
replaces answers searches until the new manifest commits; then the old generation is deleted. An
image's key is its position in the gallery list, so a re-run of an interrupted build (the same
gallery and model: the collection records the build's fingerprint) finds what is written already
and embeds only the rest. Rank 0 records the index: it reads every row back from the collection,
joins them into the metadata table and commits the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fashionnet.inference.predictor import Predictor
from indexer import layout, milvus_connection, portable
from indexer.catalogue_rows import metadata_rows
from indexer.close_match import CloseMatch, record_close_match
from indexer.distributed_build import Ranks
from indexer.embedding import EmbeddedImages, embed_images, embedded_rows, row_columns
from indexer.errors import IndexSaveError
from indexer.milvus_collection import GalleryCollection, first_key, model_record
from indexer.milvus_store import MilvusIndex

CHUNK_IMAGES = 1024  # images embedded, then written, at a time: what a killed build loses at most per rank
COLLECTION_NAME_LIMIT = 255


@dataclass
class MilvusBuild:
    """What :func:`build_milvus_index` did (on rank 0)."""

    index: MilvusIndex
    embedded: EmbeddedImages  # every image's row (no vectors), for the flagged photos
    skipped: list[tuple[str, str]] = field(default_factory=list)
    resumed: int = 0  # images an earlier run of the same build had written (an interrupted one, say)
    seconds: float = 0.0
    close_match: Optional[CloseMatch] = None


def collection_name_for(index_dir: Path) -> str:
    """The default collection of an index: its folder's name, in the letters Milvus allows."""
    name = "".join(c if c.isalnum() and c.isascii() or c == "_" else "_" for c in index_dir.name) or "gallery"
    return ("_" + name if name[0].isdigit() else name)[:COLLECTION_NAME_LIMIT]


def check_collection_name(name: str) -> str:
    if not name or len(name) > COLLECTION_NAME_LIMIT or name[0].isdigit() or \
            not all(c == "_" or (c.isascii() and c.isalnum()) for c in name):
        raise ValueError(f"--milvus-collection {name!r}: Milvus names are letters, digits and _ (not starting with a digit), "
                         f"at most {COLLECTION_NAME_LIMIT}")
    return name


def fingerprint(catalogue: pd.DataFrame, record: dict) -> str:
    """What a build embeds: the gallery rows in order and the model. A re-run with the same one resumes."""
    digest = hashlib.sha256(json.dumps({k: record[k] for k in ("model_checksum", "embedding_dim", "flip_average")}).encode())
    digest.update(catalogue.to_json(orient="split", index=False, default_handler=str).encode())
    return digest.hexdigest()


@contextlib.contextmanager
def _writing(out: Path, uri: str, lock: bool) -> Iterator[object]:
    """The client of ``uri`` for a write, under the index's writer lock when ``lock`` (a Milvus
    Lite file opens in one process at a time, so the ranks of one machine take turns)."""
    with layout.WriterLock(out) if lock else contextlib.nullcontext(), milvus_connection.session(uri):
        yield milvus_connection.client(uri)


def build_milvus_index(predictor: Predictor, catalogue: pd.DataFrame, out: Path, *, uri: str, collection: str,
                       extra_for: Callable[[list], dict], batch_size: int = 32, workers: int = 2, progress: bool = True,
                       match_recall: Optional[float] = None, copy_model_from: Optional[Path] = None, force: bool = False,
                       ranks: Ranks = Ranks()) -> Optional[MilvusBuild]:
    """Embed ``catalogue`` into the Milvus ``collection`` at ``uri`` and record the index at ``out``.

    Every rank embeds its share and writes it; rank 0 then commits the index (``extra_for(skipped)``
    gives its manifest's extra) and returns what was done; the other ranks return None.
    """
    record = model_record(predictor.model_checksum, predictor.embedding_dim, predictor.flip_average,
                          predictor.config.to_dict(), predictor.input_side)
    lite = not milvus_connection.is_server(uri)
    plan = None
    if ranks.first:
        with _writing(out, uri, lock=True) as client:
            plan = _start(GalleryCollection.open_or_create(client, collection, uri, record), out, fingerprint(catalogue, record),
                          len(catalogue))
    plan = ranks.broadcast(plan)
    done = set(plan["done"])
    mine = [int(p) for p in ranks.share(len(catalogue)) if int(p) not in done]
    skipped, seconds = _embed_and_write(predictor, catalogue, mine, out, uri, collection, plan["generation"], lock=lite,
                                        batch_size=batch_size, workers=workers, progress=progress)
    reports = ranks.gather((skipped, seconds))
    if reports is None:
        return None
    skipped = [s for report in reports for s in report[0]]
    with _writing(out, uri, lock=True) as client:
        col = GalleryCollection.open(client, collection, uri)
        generation = plan["generation"]
        rows = _rows_written(col, generation, len(catalogue))
        if rows.empty:
            raise ValueError(f"none of the {len(catalogue)} gallery images could be read; first problem: "
                             f"{skipped[0][1] if skipped else 'no images'}")
        metadata = metadata_rows(catalogue, rows)
        metadata.index = pd.Index(rows["position"].to_numpy(np.int64), name="id")
        index = MilvusIndex(path=out, uri=uri, collection=collection, generation=generation, metadata=metadata,
                            keys=metadata.index.to_numpy(np.int64), next_id=len(catalogue), next_key=len(catalogue),
                            dim=predictor.embedding_dim, model_checksum=predictor.model_checksum,
                            model_config=predictor.config.to_dict(), extra=extra_for(skipped), index_id=plan["index_id"])
        close = record_close_match(index, predictor.match_reference, match_recall)
        if copy_model_from is not None:
            portable.copy_model_into(out, copy_model_from, predictor.model_checksum)
        index.save(out, force=force)
        # what the index no longer names: the generation it replaced, and entities added to it since
        col.delete(f"pk < {first_key(generation)} or pk >= {first_key(generation) + len(catalogue)}")
    flagged_rows = EmbeddedImages(np.zeros((0, predictor.embedding_dim), np.float32), rows)
    return MilvusBuild(index, flagged_rows, skipped, len(done), max(r[1] for r in reports), close)


def _start(col: GalleryCollection, out: Path, build_fingerprint: str, count: int) -> dict:
    """Rank 0's first step: the generation this build writes (the interrupted one's, if it was the
    same build) and the positions already written there."""
    committed = layout.committed_or_none(out)
    ours = (committed or {}).get("milvus") if (committed or {}).get("backend") == "milvus" else None
    ours = ours if ours and ours.get("collection") == col.name else None
    owner = col.owner()
    if owner and owner.get("index_id") != (ours or {}).get("index_id") and owner.get("path") != str(out):
        raise IndexSaveError(f"{col.where} belongs to another index (first built at {owner.get('path')}); build into another "
                             "collection with --milvus-collection NAME, or drop that one")
    index_id = owner["index_id"] if owner else uuid.uuid4().hex
    if not owner:
        col.set_owner({"index_id": index_id, "path": str(out)})
    last = col.build_record()
    if last and last.get("fingerprint") == build_fingerprint:
        generation = int(last["generation"])
    else:
        generation = max(int((ours or {}).get("generation", -1)), int((last or {}).get("generation", -1))) + 1
        col.set_build_record({"generation": generation, "fingerprint": build_fingerprint})
    start = first_key(generation)
    done = [int(e["pk"]) - start for e in col.rows_between(start, start + count, ("pk",))]
    return {"generation": generation, "index_id": index_id, "done": done}


def _embed_and_write(predictor: Predictor, catalogue: pd.DataFrame, positions: list[int], out: Path, uri: str, collection: str,
                     generation: int, *, lock: bool, batch_size: int, workers: int, progress: bool) -> tuple[list, float]:
    """Embed the images at ``positions`` a chunk at a time, writing each chunk before the next."""
    paths = catalogue["image_path"].tolist()
    skipped, seconds = [], 0.0
    with tqdm(total=len(positions), desc="embedding gallery", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(positions), CHUNK_IMAGES):
            chunk = np.asarray(positions[start:start + CHUNK_IMAGES], dtype=np.int64)
            embedded = embed_images(predictor, [paths[p] for p in chunk], batch_size=batch_size, workers=workers, progress=False)
            skipped += embedded.skipped
            seconds += embedded.seconds
            if len(embedded.embeddings):
                rows = embedded.rows.copy()
                rows["position"] = chunk[rows["position"].to_numpy(np.int64)]
                table = metadata_rows(catalogue, rows)
                at = rows["position"].to_numpy(np.int64)
                with _writing(out, uri, lock) as client:
                    GalleryCollection.open(client, collection, uri).write(first_key(generation) + at, at, embedded.embeddings, table)
            bar.update(len(chunk))
    return skipped, seconds


def _rows_written(col: GalleryCollection, generation: int, count: int) -> pd.DataFrame:
    """The model's rows of every image written in the generation (as :func:`embed_images` makes them)."""
    start = first_key(generation)
    wanted = row_columns()
    records = []
    for entity in col.rows_between(start, start + count, ("pk", "row")):
        row = json.loads(entity["row"])
        records.append({**{c: row.get(c) for c in wanted}, "position": int(entity["pk"]) - start})
    return embedded_rows(records)
