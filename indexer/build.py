"""Building and updating a gallery index: choose the gallery rows, embed them, store them in FAISS or
Milvus (:mod:`indexer.backends`), in one process or several (:mod:`indexer.distributed_build`)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from fashionnet.data.readers import detect_benchmark, read_benchmark
from fashionnet.evaluation.protocols import gallery_frame
from fashionnet.inference.predictor import Predictor
from indexer import layout, milvus_connection, ownership, portable
from indexer.backend_names import DEFAULT_BACKEND
from indexer.backends import AnyIndex, check_backend, open_index
from indexer.close_match import CloseMatch, record_close_match
from indexer.catalogue_metadata import Applied, Catalogue, apply_catalogue, inherit_item_values
from indexer.catalogue_rows import metadata_rows
from indexer.compatibility import check_index_fits_model
from indexer.distributed_build import Ranks, gather_embedded, with_positions
from indexer.embedding import embed_images, file_sha256, folder_catalogue
from indexer.milvus_build import build_milvus_index, check_collection_name, collection_name_for
from indexer.rerank import check_rerank
from indexer.store import EmbeddingIndex
from indexer.unfamiliar import Flagged, flagged_photos, refusals, without_flagged
from indexer.updates import locked_update

METADATA_COLUMNS = ("image_path", "item_id", "category", "clothes_type", "source")
MAX_RECORDED_SKIPS = 1000  # per manifest: the count is always exact, the list is capped
# Without --index-factory a catalogue this large gets an IVF index: exact search over it would cost
# more per query than the model's forward pass (docs/experiments/index_types.md).
AUTO_IVF_FROM = 50_000
IVF_MIN_POINTS_PER_LIST = 39  # FAISS warns below this many training points per list


def default_index_factory(count: int) -> Optional[str]:
    """The factory a build without --index-factory uses for ``count`` images: exact search (None)
    below AUTO_IVF_FROM, else ``IVF<nlist>,Flat`` with nlist the power of two nearest below 4 x sqrt(count)."""
    if count < AUTO_IVF_FROM:
        return None
    nlist = 2 ** int(np.floor(np.log2(4 * np.sqrt(count))))
    while nlist > 1 and nlist * IVF_MIN_POINTS_PER_LIST > count:
        nlist //= 2
    return f"IVF{nlist},Flat"


@dataclass
class BuildReport:
    index: AnyIndex
    added: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    images_per_second: float = 0.0
    catalogue: Optional[Applied] = None  # what --metadata matched, when given
    flagged: list[Flagged] = field(default_factory=list)  # photos that do not look like garment photos (indexed, flagged)
    close_match: Optional[CloseMatch] = None  # recorded in the manifest (indexer.close_match)
    resumed: int = 0  # images an earlier run of the same Milvus build had written (not embedded again)


@dataclass
class AddReport:
    """What :func:`add_images` did: ``skipped`` images could not be read, ``duplicates`` were
    already in the index (or given twice); both as (path, reason)."""

    added: int
    count: int  # vectors in the index afterwards
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    catalogue: Optional[Applied] = None  # what the catalogue metadata matched, when given
    flagged: list[Flagged] = field(default_factory=list)  # photos that do not look like garment photos
    refused: list[tuple[str, str]] = field(default_factory=list)  # flagged photos left out (reject_unfamiliar), with why


def parse_shard(spec: Optional[str]) -> Optional[tuple[int, int]]:
    """"i/n" -> (i, n) with 0 <= i < n."""
    if not spec:
        return None
    try:
        i, n = (int(v) for v in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {spec!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {spec}: need 0 <= i < n")
    return i, n


def gallery_rows(data_root: str | os.PathLike, benchmark: str = "auto", split: str = "auto") -> pd.DataFrame:
    """The gallery of a DeepFashion layout, as the evaluation protocols define it.

    In-shop: the ``gallery`` split. Consumer-to-shop: all shop images of the ``test`` items.
    ``split`` overrides the split; ``all`` takes every shop image.
    """
    root = Path(data_root)
    bench = detect_benchmark(root) if benchmark == "auto" else benchmark
    frame = read_benchmark(root, bench)
    if split == "auto":
        rows = gallery_frame(frame, bench)
    elif split == "all":
        rows = gallery_frame(frame, bench, split="all")
    else:  # a split named on the command line: its shop photos
        rows = gallery_frame(frame, bench, split="all")
        rows = rows[rows["split"] == split]
    if rows.empty:
        raise ValueError(f"{root}: no shop images in split {split!r} (splits present: {sorted(frame['split'].dropna().unique())})")
    out = rows[list(METADATA_COLUMNS)].copy()
    out["image_path"] = [str((root / p).resolve()) for p in out["image_path"]]
    return out.reset_index(drop=True)


def build_index(predictor: Predictor, catalogue: pd.DataFrame, out: str | os.PathLike, *, index_factory: Optional[str] = None,
                nprobe: Optional[int] = None, shard: Optional[tuple[int, int]] = None, trained_index: Optional[str] = None,
                batch_size: int = 32, workers: int = 2, device: str = "auto", checkpoint_path: Optional[str] = None,
                progress: bool = True, train_sample: int = 100_000, extra: Optional[dict] = None, force: bool = False,
                copy_model: bool = False, rerank: Optional[str] = None, rerank_factor: Optional[int] = None,
                shop_metadata: Optional[Catalogue] = None, metadata_bases: Sequence[str | os.PathLike] = (),
                match_recall: Optional[float] = None, backend: str = DEFAULT_BACKEND, milvus_uri: Optional[str] = None,
                milvus_collection: Optional[str] = None, ranks: Optional[Ranks] = None) -> Optional[BuildReport]:
    """Embed ``catalogue`` (columns image_path, item_id, ...) into an index saved atomically at ``out``.

    ``shard=(i, n)`` embeds every n-th row starting at i (merge the shards with ``indexer merge``).
    ``trained_index`` starts from an already trained (IVF) index so shards share one quantizer.
    Everything that can be checked before embedding (the target folder, the factory string, the
    trained index, the shard) is checked first, so a mistake costs seconds, not the whole run.
    ``force`` allows writing into a folder of other files (they are left untouched).
    ``copy_model`` copies the checkpoint into the index, so the index works wherever it is copied.
    ``rerank`` ("exact", default none) re-scores ``rerank_factor`` x k candidates of a new index
    from memory-mapped vectors (:mod:`indexer.rerank`); a ``trained_index`` keeps its own setting.
    Without ``index_factory`` the index is exact, or IVF for a large catalogue (:func:`default_index_factory`).
    ``shop_metadata``: the shop's own labels and fields (:mod:`indexer.catalogue_metadata`), its
    ``image`` keys relative to ``metadata_bases``; rows that match no photo are reported, not fatal.
    The index records its close-match score (:mod:`indexer.close_match`, at ``match_recall``) where the
    checkpoint carries held-out photos for it; a shard does not (merged shards fit it when opened).
    ``backend`` "milvus" keeps the vectors in the Milvus collection ``milvus_collection`` (default:
    the folder's name) at ``milvus_uri`` (default: a Milvus Lite file inside ``out``; :mod:`indexer.milvus_build`).
    ``ranks``: this process's place in a torchrun build (:mod:`indexer.distributed_build`): each rank
    embeds its share, rank 0 records the index and returns the report, the other ranks None.
    """
    check_rerank(rerank, rerank_factor)
    check_backend(backend)
    ranks = ranks or Ranks()
    out = Path(out).absolute()
    ownership.check_save_target(out, force=force)
    check_backend_options(backend, milvus_uri=milvus_uri, milvus_collection=milvus_collection, index_factory=index_factory,
                          nprobe=nprobe, shard=shard, trained_index=trained_index, rerank=rerank, rerank_factor=rerank_factor)
    if backend == "milvus":
        milvus_uri = milvus_uri or str(out / layout.MILVUS_LITE_FILE)
        milvus_collection = milvus_collection or collection_name_for(out)
        if not ranks.one_machine and not milvus_connection.is_server(milvus_uri):
            raise ValueError(f"ranks on several machines cannot share the Milvus Lite file {milvus_uri}: give a Milvus server "
                             "(--milvus-uri http://HOST:19530)")
    if shard is not None and ranks.world > 1:
        raise ValueError("--shard and torchrun both split the gallery among processes: give one of them")
    applied = None
    if shop_metadata is not None:  # before the shard's slice: every row is matched against the whole build
        catalogue, applied = apply_catalogue(shop_metadata, catalogue, metadata_bases)
    if shard is not None:
        i, n = shard
        if not 0 <= i < n:
            raise ValueError(f"shard {i}/{n}: need 0 <= i < n")
        catalogue = catalogue.iloc[i::n].reset_index(drop=True)
    if catalogue.empty:
        raise ValueError("no gallery images to index" + (f" in shard {shard[0]}/{shard[1]}" if shard else ""))
    if copy_model and not checkpoint_path:
        raise ValueError("copy_model needs the checkpoint's path")
    image_root = portable.common_root(catalogue["image_path"])
    catalogue = catalogue.assign(image_relpath=portable.relative_to_root(catalogue["image_path"], image_root))
    paths = catalogue["image_path"].tolist()
    model_in_index = portable.model_copy_name(predictor.model_checksum) if copy_model else None

    def extra_for(skipped: list[tuple[str, str]]) -> dict:
        return {
            **portable.portable_extra(out, image_root, checkpoint_path, model_in_index),
            "input_side": predictor.input_side,
            "flip_average": predictor.flip_average,
            "build_command": " ".join(["indexer", *sys.argv[1:]]) if Path(sys.argv[0]).name == "indexer" else "indexer build",
            "shard": f"{shard[0]}/{shard[1]}" if shard else None,
            "skipped": [{"path": p, "problem": m} for p, m in skipped[:MAX_RECORDED_SKIPS]],
            "skipped_count": len(skipped),
            **(extra or {}),
        }

    if backend == "milvus":
        built = build_milvus_index(predictor, catalogue, out, uri=milvus_uri, collection=milvus_collection, extra_for=extra_for,
                                   batch_size=batch_size, workers=workers, progress=progress, match_recall=match_recall,
                                   copy_model_from=Path(checkpoint_path) if copy_model else None, force=force, ranks=ranks)
        if built is None:
            return None
        written = len(built.index) - built.resumed
        return BuildReport(built.index, len(built.index), built.skipped, written / built.seconds if built.seconds else 0.0, applied,
                           flagged_photos(built.embedded, paths, _threshold(predictor)), built.close_match, built.resumed)
    if trained_index:
        base = EmbeddingIndex.load(trained_index, expected_model_checksum=predictor.model_checksum, expected_dim=predictor.embedding_dim,
                                   device=device)
        index = base.empty_copy()
    else:
        if index_factory is None and shard is None:  # shards keep one type, so they can be merged
            index_factory = default_index_factory(len(catalogue))
        index = EmbeddingIndex.create(predictor.embedding_dim, index_factory, model_checksum=predictor.model_checksum,
                                      model_config=predictor.config.to_dict(), device=device, rerank=rerank or "none",
                                      rerank_factor=rerank_factor)
    desc = "embedding gallery" + (f" shard {shard[0]}/{shard[1]}" if shard else "")
    if ranks.world > 1:  # each rank embeds its share; rank 0 joins them in gallery order and builds alone
        share = ranks.share(len(paths))
        mine = embed_images(predictor, [paths[p] for p in share], batch_size=batch_size, workers=workers, progress=progress, desc=desc)
        embedded = gather_embedded(ranks, with_positions(mine, share), paths)
        if embedded is None:
            return None
    else:
        embedded = embed_images(predictor, paths, batch_size=batch_size, workers=workers, progress=progress, desc=desc)
    if len(embedded.embeddings) == 0:
        raise ValueError(f"none of the {len(catalogue)} gallery images could be read; first problem: "
                         f"{embedded.skipped[0][1] if embedded.skipped else 'no images'}")
    index.extra = {**index.extra, **extra_for(embedded.skipped)}
    if not index.is_trained:
        index.train(embedded.embeddings, max_train=train_sample)
    if nprobe is None and index.nprobe is not None:
        # FAISS starts IVF indexes at nprobe=1, far too few; 1/64 of the lists is a sane start
        # (scripts/benchmark_index.py measures the trade-off).
        nprobe = min(index.info()["nlist"], max(8, index.info()["nlist"] // 64))
    if nprobe is not None:
        index.nprobe = nprobe
    index.add(embedded.embeddings, metadata_rows(catalogue, embedded.rows), show_progress=progress)
    close = record_close_match(index, predictor.match_reference if shard is None else None, match_recall)
    with layout.WriterLock(out):  # a tidy-up in another process would delete a copy no manifest names yet
        if copy_model:
            portable.copy_model_into(out, Path(checkpoint_path), predictor.model_checksum)
        index.save(out, force=force)
    flagged = flagged_photos(embedded, paths, _threshold(predictor))
    return BuildReport(index, len(embedded.embeddings), embedded.skipped, embedded.images_per_second, applied, flagged, close)


def check_backend_options(backend: str, *, milvus_uri: Optional[str] = None, milvus_collection: Optional[str] = None,
                          **faiss_options) -> None:
    """Refuse options that do not fit the backend, before any work: the FAISS-only ones
    (``faiss_options``: factory, nprobe, shard, ...) with Milvus, the Milvus ones with FAISS."""
    check_backend(backend)
    if backend != "milvus":
        if milvus_uri or milvus_collection:
            raise ValueError("--milvus-uri and --milvus-collection need --backend milvus")
        return
    used = [name for name, value in faiss_options.items() if value not in (None, "none")]
    if used:
        flags = ", ".join("--" + name.replace("_", "-") for name in used)
        raise ValueError(f"{flags} shape a FAISS index; the Milvus backend searches its collection exactly and splits a build "
                         "among processes with torchrun, so drop them or use --backend faiss")
    if milvus_uri:
        milvus_connection.check_uri(milvus_uri)
    if milvus_collection:
        check_collection_name(milvus_collection)


def _threshold(predictor: Predictor) -> Optional[float]:
    return predictor.density.threshold if predictor.density is not None else None


def add_images(index_dir: str | os.PathLike, predictor: Predictor, paths: Sequence[str], *, batch_size: int = 32, workers: int = 2,
               progress: bool = True, index: Optional[AnyIndex] = None, shop_metadata: Optional[Catalogue] = None,
               reject_unfamiliar: bool = False) -> AddReport:
    """Embed image files / folders and add them to the saved index at ``index_dir``.

    Images already in the index (same file, or the same picture under another name) and repeats
    within ``paths`` are left out and reported. Embedding runs without the writer lock; the add
    itself runs under it on the newest saved version, so concurrent adds and removes all land. An
    add that adds nothing leaves the index as it was. ``index`` is the index at ``index_dir`` when the
    caller has loaded it already (used for the early checks only; the add reloads under the lock).
    ``shop_metadata`` gives the new photos the shop's labels and fields (``image`` keys relative to
    ``paths``); a new photo of an item already in the index takes the item's where it has none.
    Photos that do not look like garment photos are added and flagged (``flagged``), or with
    ``reject_unfamiliar`` left out (``refused``). The index's close-match score is fitted again.
    """
    index = index if index is not None else open_index(index_dir, device="cpu")
    check_index_fits_model(index.info().get("path"), index.built_by, model_checksum=predictor.model_checksum,
                           embedding_dim=predictor.embedding_dim, flip_average=predictor.flip_average)
    catalogue = folder_catalogue(paths)
    if catalogue.empty:
        raise ValueError(f"no image files found in {', '.join(map(str, paths))}")
    catalogue["image_sha256"] = [file_sha256(p) for p in catalogue["image_path"]]
    if (index.extra or {}).get("image_root"):  # paths relative to the gallery's root, as the build stored them
        catalogue["image_relpath"] = portable.relative_for_index(catalogue["image_path"], Path(index.extra["image_root"]), Path(index_dir))
    applied = None
    if shop_metadata is not None:
        bases = [p if Path(p).is_dir() else Path(p).parent for p in paths]
        catalogue, applied = apply_catalogue(shop_metadata, catalogue, [*bases, index.extra.get("image_root") or Path.cwd()])
    catalogue, duplicates = _without_duplicates(catalogue, index.metadata)
    skipped: list[tuple[str, str]] = []
    if catalogue.empty:
        return AddReport(0, index.ntotal, skipped, duplicates, applied)
    embedded = embed_images(predictor, catalogue["image_path"].tolist(), batch_size=batch_size, workers=workers, progress=progress,
                            desc="embedding new images")
    skipped = embedded.skipped
    flagged = flagged_photos(embedded, catalogue["image_path"].tolist(), _threshold(predictor))
    refused = refusals(flagged) if reject_unfamiliar else []
    if reject_unfamiliar:
        embedded = without_flagged(embedded)
    if len(embedded.embeddings) == 0:
        return AddReport(0, index.ntotal, skipped, duplicates, applied, flagged, refused)
    with locked_update(index_dir, expected_model_checksum=index.model_checksum, expected_dim=index.dim) as fresh:
        # another writer may have added some of these images since the check above
        gallery = fresh.metadata
        rows = metadata_rows(inherit_item_values(catalogue, gallery), embedded.rows)
        fresh_rows, late = _without_duplicates(rows, gallery)
        duplicates += late
        keep = rows["image_path"].isin(fresh_rows["image_path"]).to_numpy()
        if keep.any():
            fresh.add(embedded.embeddings[keep], rows[keep].reset_index(drop=True), show_progress=progress)
            _record_skips(fresh, skipped, duplicates)
            record_close_match(fresh, predictor.match_reference)  # a larger catalogue: its look-alikes score higher
        return AddReport(int(keep.sum()), fresh.ntotal, skipped, duplicates, applied, flagged, refused)


def _without_duplicates(candidates: pd.DataFrame, indexed: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """``candidates`` less the images already in ``indexed`` (by path, or by content checksum) and
    less repeats among themselves; returns them and (path, reason) for each left out."""
    by_path = dict(zip(indexed["image_path"].astype(str), indexed.index)) if "image_path" in indexed else {}
    by_content = {}
    if "image_sha256" in indexed:
        known = indexed["image_sha256"].notna().to_numpy()
        by_content = dict(zip(indexed["image_sha256"][known].astype(str), indexed.index[known]))
    seen_paths: dict[str, int] = {}
    seen_content: dict[str, str] = {}
    keep, duplicates = [], []
    for path, digest in zip(candidates["image_path"].astype(str), candidates["image_sha256"]):
        digest = None if pd.isna(digest) else str(digest)
        if path in by_path:
            duplicates.append((path, f"already in the index (id {by_path[path]})"))
        elif digest is not None and digest in by_content:
            duplicates.append((path, f"the same picture is already in the index as id {by_content[digest]}"))
        elif path in seen_paths:
            duplicates.append((path, "given more than once"))
        elif digest is not None and digest in seen_content:
            duplicates.append((path, f"the same picture as {seen_content[digest]}, given earlier"))
        else:
            keep.append(True)
            seen_paths[path] = 1
            if digest is not None:
                seen_content[digest] = path
            continue
        keep.append(False)
    return candidates[np.array(keep, dtype=bool)].reset_index(drop=True), duplicates


def _record_skips(index: AnyIndex, skipped: list[tuple[str, str]], duplicates: list[tuple[str, str]]) -> None:
    """Add this run's skipped images to the manifest's list (capped) and count (exact)."""
    if not skipped and not duplicates:
        return
    extra = dict(index.extra)
    entries = [{"path": p, "problem": m} for p, m in skipped] + [{"path": p, "problem": f"duplicate: {m}"} for p, m in duplicates]
    extra["skipped"] = (list(extra.get("skipped") or []) + entries)[-MAX_RECORDED_SKIPS:]
    extra["skipped_count"] = int(extra.get("skipped_count") or 0) + len(entries)
    index.extra = extra
