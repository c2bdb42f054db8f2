"""``indexer``: build, update, query, serve and inspect gallery indexes.

    indexer build --checkpoint C --data-root D [--benchmark inshop|consumer2shop] [--split gallery] --out IDX
    indexer build --checkpoint C --images shop_photos/ --out IDX [--copy-model]
    indexer add IDX PATHS... ; indexer remove IDX --item ID
    indexer query IDX IMAGE... -k 20 [--json] [--min-score S] [--clothes-type 1] [--category Tees] [--attribute floral]
    indexer query IDX photos/ --out results.csv|.jsonl   # many photos
    indexer info IDX ; indexer merge OUT SHARD...
    indexer build ... --backend milvus [--milvus-uri gallery.db|http://HOST:19530] [--milvus-collection NAME]
    torchrun --nnodes N --nproc_per_node M $(which indexer) build ...   # each rank embeds its share

torch and FAISS load only inside the commands that need them, so ``--help`` and ``--version``
answer at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional

import fashionnet
from fashionnet.cli.options import data_root_option, device_option, runtime_option
from indexer.api import add_serve_parser, cmd_serve  # torch-free until a server starts
from indexer.backend_names import BACKEND_HELP, BACKENDS, CHECK_BACKEND_HELP, DEFAULT_BACKEND, MILVUS_URI_HELP
from indexer.errors import IndexStoreError
from indexer.filter_values import CLOTHES_TYPE_CHOICES, clothes_type_argument

FORCE_HELP = "write into a folder that holds other files (they are left untouched)"
INDEX_CHECKPOINT_HELP = "default: the checkpoint the index was built with"


DEVICE_HELP = "for embedding and search: auto (default: the GPU when present), cpu or cuda"


def _device_option(p: argparse.ArgumentParser) -> None:
    device_option(p, DEVICE_HELP)


def _runtime_option(p: argparse.ArgumentParser) -> None:
    runtime_option(p)


def _progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars (the one spelling used by every command and script)")


def _embedding_options(p: argparse.ArgumentParser) -> None:
    """Options of every command that embeds images: build and add."""
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--workers", type=int, default=2, help="processes decoding images (0: decode in the main process)")
    _device_option(p)
    _runtime_option(p)
    _progress_option(p)


METADATA_HELP = ("the shop's own data per photo or item: a .csv with a header row or a .jsonl file, keyed by 'image' (the "
                 "photo's path relative to the folder given, e.g. sku-42/front.jpg) or 'item_id' (every photo of the item); "
                 "optional columns category, clothes_type (1-3 or upper, lower, full), attributes ('|' or ',' between names) "
                 "and any others (title, price, seller, ...), returned with each result. Filters read these before the "
                 "model's predictions; rows matching no photo are listed, not fatal")


def _filter_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clothes-type", type=clothes_type_argument, metavar="TYPE",
                   help=f"only results of this clothes type: {CLOTHES_TYPE_CHOICES} (1 upper, 2 lower, 3 full body)")
    p.add_argument("--category", help="only results of this category (the shop's label, else predicted), e.g. Tees")
    p.add_argument("--attribute", action="append", default=[], help="only results with this attribute (repeat: all must hold)")


def _index_backend_options(p: argparse.ArgumentParser) -> None:
    """Options of every command on an existing index: which backend it must have, where its Milvus is."""
    p.add_argument("--backend", choices=BACKENDS, default=None, help=CHECK_BACKEND_HELP)
    p.add_argument("--milvus-uri", metavar="URI", help=MILVUS_URI_HELP + "; default: the one the index recorded")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="indexer", description="Gallery index of FashionNet embeddings (FAISS or Milvus)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {fashionnet.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="embed a gallery into a new index (written atomically)")
    b.add_argument("--checkpoint", required=True, help="trained FashionNet checkpoint")
    src = b.add_mutually_exclusive_group(required=True)
    data_root_option(src, several=False, type=str, help="DeepFashion layout root (In-shop or Consumer-to-shop) to index")
    src.add_argument("--images", nargs="+", help="files or folders of shop photos with no annotations")
    b.add_argument("--benchmark", default="auto", choices=["auto", "inshop", "consumer2shop"],
                   help="layout of --data-root (default auto: told from its annotation files)")
    b.add_argument("--split", default="auto", help="gallery split (auto: In-shop 'gallery', Consumer-to-shop 'test'; 'all': every shop image)")
    b.add_argument("--out", required=True, help="the index folder written: the FAISS index, its manifest and metadata (an existing index there is replaced atomically)")
    b.add_argument("--force", action="store_true", help=FORCE_HELP)
    b.add_argument("--index-factory", default=None, help="FAISS factory string, e.g. IVF4096,PQ32 or HNSW32 (default: exact inner product, "
                        "or IVF<nlist>,Flat from 50,000 images on)")
    b.add_argument("--nprobe", type=int, default=None, help="IVF lists visited per query (stored as the default)")
    b.add_argument("--rerank", default="none", choices=["none", "exact"],
                   help="re-score a compressed index's candidates from a memory-mapped file of their float32 vectors (exact)")
    b.add_argument("--rerank-factor", type=int, default=None, help="candidates per result re-scored with --rerank (default 10)")
    b.add_argument("--train-sample", type=int, default=100_000, help="vectors used to train IVF/PQ indexes")
    b.add_argument("--trained-index", help="start from this trained (IVF) index, so shards share a quantizer")
    b.add_argument("--shard", help="embed only slice i of n (i/n), for building on several machines")
    b.add_argument("--metadata", metavar="FILE", help=METADATA_HELP)
    b.add_argument("--copy-model", action="store_true", help="copy the checkpoint into the index, so a copied index carries its model")
    b.add_argument("--match-recall", type=float, default=None, metavar="P",
                   help="share of photos of items in the catalogue that reach the close-match score fitted for it "
                        "(default 0.9; higher calls more photos of items it lacks a match too; docs/experiments/close_match.md)")
    b.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND, help=BACKEND_HELP)
    b.add_argument("--milvus-uri", metavar="URI", help=MILVUS_URI_HELP + "; default: milvus.db inside --out")
    b.add_argument("--milvus-collection", metavar="NAME", help="the Milvus collection written (default: the --out folder's name)")
    b.add_argument("--no-flip-average", action="store_true",
                   help="embed each photo once, not averaged with its mirror image (half the time; recorded in the index, "
                        "so queries and later adds follow it)")
    _embedding_options(b)

    a = sub.add_parser("add", help="embed images or folders and add them to an index")
    a.add_argument("index", help="index folder to add to (updated in place)")
    a.add_argument("paths", nargs="+", help="image files or folders of images")
    a.add_argument("--checkpoint", help=INDEX_CHECKPOINT_HELP)
    a.add_argument("--metadata", metavar="FILE", help=METADATA_HELP.replace("folder given", "folder given to add"))
    a.add_argument("--reject-unfamiliar", action="store_true",
                   help="leave out photos that do not look like garment photos, naming each (default: add them, flagged)")
    _index_backend_options(a)
    _embedding_options(a)

    r = sub.add_parser("remove", help="remove every image of an item")
    r.add_argument("index", help="index folder to remove from (updated in place)")
    r.add_argument("--item", required=True, action="append", help="item id (repeat for several)")
    _index_backend_options(r)

    q = sub.add_parser("query", help="top-k shop items for a photo, or for many (--out)")
    q.add_argument("index", help="index folder to search")
    q.add_argument("inputs", nargs="+", metavar="IMAGE", help="photos, folders of photos or .txt lists of paths: each answered in turn, "
                                                             "with one model load")
    q.add_argument("-k", type=int, default=20, help="results per photo (default 20)")
    q.add_argument("--per-image", action="store_true", help="the k nearest images, even several of one item (default: k items, each at its best image)")
    q.add_argument("--checkpoint", help=INDEX_CHECKPOINT_HELP)
    q.add_argument("--image-root", help="where the gallery images are now, if the index was moved away from them")
    _filter_options(q)
    q.add_argument("--nprobe", type=int, default=None, help="IVF lists visited per query (default: the one stored in the index)")
    q.add_argument("--min-score", type=float, default=None, help="leave out results scored below this")
    q.add_argument("--exclude-unfamiliar", action="store_true", help="leave out gallery photos flagged as not looking like garment photos")
    q.add_argument("--json", action="store_true", help="print JSON instead of tables (a list of answers for several photos)")
    q.add_argument("--out", help="file written with every photo's top k, one row per result (.csv or .jsonl)")
    _index_backend_options(q)
    _device_option(q)
    _runtime_option(q)
    _progress_option(q)

    i = sub.add_parser("info", help="describe an index")
    i.add_argument("index", help="index folder to describe")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _index_backend_options(i)

    m = sub.add_parser("merge", help="combine shard indexes into one")
    m.add_argument("out", help="the merged index folder written")
    m.add_argument("shards", nargs="+", help="shard index folders built with --shard (left as they are)")
    m.add_argument("--force", action="store_true", help=FORCE_HELP)

    add_serve_parser(sub)
    return parser


def cmd_build(args) -> int:
    from fashionnet.inference.predictor import Predictor
    from indexer import layout, ownership
    from indexer.build import build_index, check_backend_options, gallery_rows, parse_shard
    from indexer.distributed_build import end_process_group, ranks_from_environment
    from indexer.embedding import folder_catalogue

    # cheap checks first: a wrong --out or --shard must not cost a model load or an embedding run
    ownership.check_save_target(Path(args.out).absolute(), force=args.force)
    shard = parse_shard(args.shard)
    for name in ("batch_size", "train_sample"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.nprobe is not None and args.nprobe < 1:
        raise ValueError(f"--nprobe must be at least 1, got {args.nprobe}")
    if args.rerank_factor is not None and args.rerank_factor < 1:
        raise ValueError(f"--rerank-factor must be at least 1, got {args.rerank_factor}")
    if args.trained_index:
        layout.read_manifest(Path(args.trained_index).absolute())
    check_backend_options(args.backend, milvus_uri=args.milvus_uri, milvus_collection=args.milvus_collection,
                          index_factory=args.index_factory, nprobe=args.nprobe, shard=args.shard, trained_index=args.trained_index,
                          rerank=args.rerank, rerank_factor=args.rerank_factor)
    shop_metadata = _read_metadata(args.metadata)
    catalogue = gallery_rows(args.data_root, args.benchmark, args.split) if args.data_root else folder_catalogue(args.images)
    if catalogue.empty:
        raise ValueError(f"no images found in {' '.join(args.images)}")
    ranks = ranks_from_environment()  # under torchrun: this process's share of the gallery
    _use_the_machine(ranks.world)
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, runtime=args.runtime, flip_average=not args.no_flip_average)
    try:
        report = build_index(
            predictor, catalogue, args.out, index_factory=args.index_factory, nprobe=args.nprobe, shard=shard,
            trained_index=args.trained_index, batch_size=args.batch_size, workers=args.workers, device=args.device,
            checkpoint_path=args.checkpoint, train_sample=args.train_sample, force=args.force, copy_model=args.copy_model,
            progress=not args.no_progress, rerank=args.rerank, rerank_factor=args.rerank_factor,
            extra={"data_root": str(Path(args.data_root).resolve()) if args.data_root else None}, shop_metadata=shop_metadata,
            metadata_bases=_metadata_bases([args.data_root] if args.data_root else args.images), match_recall=args.match_recall,
            backend=args.backend, milvus_uri=args.milvus_uri, milvus_collection=args.milvus_collection, ranks=ranks)
    finally:
        end_process_group(ranks)
    if report is None:  # a rank other than 0 of a torchrun: rank 0 reports
        return 0
    where = f"Milvus collection {report.index.collection_name!r} at {report.index.uri}" if args.backend == "milvus" else report.index.index_factory
    resumed = f"{report.resumed} of them already written by an earlier run of this build; " if report.resumed else ""
    ranks_used = f", {ranks.world} processes" if ranks.world > 1 else ""
    print(f"indexed {report.added} images into {args.out} ({where}, dim {report.index.dim}; {resumed}"
          f"{report.images_per_second:.1f} images/s, {predictor.runtime} on {predictor.device.type}, {_threads()} threads{ranks_used})")
    print(report.close_match.describe() if report.close_match is not None else _no_close_match(predictor))
    _report_skipped(report.skipped)
    _report_flagged(report.flagged)
    _report_metadata(args.metadata, report.catalogue)
    return 0


def _read_metadata(path: Optional[str]):
    """The --metadata file read and checked (before any model load), or None."""
    if not path:
        return None
    from indexer.catalogue_metadata import read_catalogue

    return read_catalogue(path)


def _metadata_bases(paths) -> list[Path]:
    """The folders --metadata image keys are relative to: each folder given, a file's own folder."""
    return [Path(p) if Path(p).is_dir() else Path(p).parent for p in paths]


def _report_metadata(path: Optional[str], applied) -> None:
    if applied is None:
        return
    print(f"{path}: catalogue data given to {applied.matched_photos} photos")
    if applied.unmatched:
        print(f"{len(applied.unmatched)} row(s) of {path} match no photo of this run (left out):", file=sys.stderr)
        for line in applied.describe(path):
            print(f"  {line}", file=sys.stderr)


def _report_skipped(skipped, what: str = "unreadable image(s)", shown: int = 50) -> None:
    if skipped:
        print(f"skipped {len(skipped)} {what}:", file=sys.stderr)
        for path, problem in skipped[:shown]:
            print(f"  {problem}" if problem.startswith(path) else f"  {path}: {problem}", file=sys.stderr)
        if len(skipped) > shown:
            print(f"  ... and {len(skipped) - shown} more (all listed in the index manifest)", file=sys.stderr)


def _use_the_machine(processes: int = 1) -> None:
    """Embedding a catalogue is a batch job: give the forward pass every core (shared by the
    ``processes`` of a torchrun on this machine)."""
    import os

    from fashionnet.device import set_threads

    local = int(os.environ.get("LOCAL_WORLD_SIZE") or processes)
    set_threads(int(os.environ.get("FASHIONNET_THREADS") or max(1, (os.cpu_count() or 1) // max(1, local))))


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def cmd_add(args) -> int:
    from fashionnet.inference.predictor import Predictor
    from indexer.backends import open_index
    from indexer.build import add_images
    from indexer.search import default_checkpoint

    for path in args.paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
    shop_metadata = _read_metadata(args.metadata)
    index = open_index(args.index, device="cpu", backend=args.backend, milvus_uri=args.milvus_uri)
    predictor = Predictor.from_checkpoint(default_checkpoint(index, args.checkpoint), device=args.device, runtime=args.runtime,
                                          flip_average=index.flip_average)
    report = add_images(args.index, predictor, args.paths, batch_size=args.batch_size, workers=args.workers,
                        progress=not args.no_progress, index=index, shop_metadata=shop_metadata, reject_unfamiliar=args.reject_unfamiliar)
    _report_skipped(report.skipped)
    _report_skipped(report.duplicates, "image(s) already in the index")
    _report_metadata(args.metadata, report.catalogue)
    if args.reject_unfamiliar:
        _report_skipped(report.refused, "photo(s) refused (--reject-unfamiliar)")
    else:
        _report_flagged(report.flagged)
    if report.added == 0:
        print(f"indexer add: nothing added; the index at {args.index} is unchanged ({report.count} images)", file=sys.stderr)
        return 1
    flagged = f" ({len(report.flagged)} flagged as not garment photos)" if report.flagged and not args.reject_unfamiliar else ""
    print(f"added {report.added} images{flagged}; the index now holds {report.count}")
    return 0


def _report_flagged(flagged, shown: int = 50) -> None:
    """Name each added photo the model flagged (stored with its row; searches may leave it out)."""
    if flagged:
        print(f"{len(flagged)} photo(s) added but flagged (searches can leave them out with --exclude-unfamiliar):", file=sys.stderr)
        for photo in flagged[:shown]:
            print(f"  {photo.path}: {photo.problem}", file=sys.stderr)
        if len(flagged) > shown:
            print(f"  ... and {len(flagged) - shown} more (the index's rows say which)", file=sys.stderr)


def _no_close_match(predictor) -> str:
    reference = predictor.match_reference
    if reference is None:
        return "no close-match score: the checkpoint carries no held-out photos for it (scripts/fit_close_match.py adds them)"
    if bool(reference.flip_average) != bool(predictor.flip_average):
        said = {True: "with", False: "without"}
        return (f"no close-match score: the checkpoint's held-out photos were embedded {said[bool(reference.flip_average)]} "
                f"flip averaging, this index {said[bool(predictor.flip_average)]}")
    return "no close-match score: too few held-out photos, or an index that ranks by distance"


def cmd_remove(args) -> int:
    from indexer.backends import use_backend
    from indexer.updates import remove_items

    from indexer.close_match import reference_of_index

    use_backend(args.index, args.backend, args.milvus_uri)
    # the close-match score is fitted again on the smaller catalogue, with the model's held-out photos
    result = remove_items(args.index, args.item, reference_of_index(args.index))  # also deletes the items' uploaded photos
    for item, n in result.removed.items():
        if n == 0:
            print(f"item {item!r} is not in the index", file=sys.stderr)
    removed = sum(result.removed.values())
    if not removed:
        print(f"indexer remove: nothing removed; the index at {args.index} is unchanged", file=sys.stderr)
        return 1
    print(f"removed {removed} images; the index now holds {result.count}")
    return 0


def cmd_query(args) -> int:
    from indexer.query_command import run_query

    return run_query(args)


def cmd_info(args) -> int:
    from indexer.backends import open_index

    index = open_index(args.index, device="cpu", backend=args.backend, milvus_uri=args.milvus_uri)
    info = index.info()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print(f"{'backend':26s} {info.get('backend', 'faiss')}")
        for key in ("path", "count", "dim", "metric", "index_factory", "index_type", "nlist", "nprobe", "model_checksum",
                    "created_utc", "package_version", "bytes_per_vector_estimate", "memory_bytes_estimate", "milvus_uri", "milvus_collection"):
            if key in info:
                print(f"{key:26s} {info.get(key)}")
        extra = info.get("extra") or {}
        for key in ("checkpoint", "checkpoint_in_index", "image_root", "data_root", "input_side", "image_size",  # image_size: older indexes
                    "skipped_count"):
            if key in extra:
                print(f"{key:26s} {extra[key]}")
        from indexer.close_match import CloseMatch

        close = CloseMatch.from_extra(extra)
        print(f"{'close_match':26s} {close.describe() if close is not None else 'none recorded'}")
        print(f"{'flip_average':26s} {index.flip_average}")
    return 0


def cmd_merge(args) -> int:
    from indexer.updates import merge

    merged = merge(args.shards, args.out, force=args.force)
    print(f"merged {len(args.shards)} shards into {args.out}: {merged.ntotal} vectors")
    return 0


COMMANDS = {"build": cmd_build, "add": cmd_add, "remove": cmd_remove, "query": cmd_query, "info": cmd_info, "merge": cmd_merge, "serve": cmd_serve}


def main(argv: Optional[list[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    # the indexer's own notices (e.g. waiting for another writer) on stderr; other libraries' logs stay quiet
    log = logging.getLogger("indexer")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("indexer: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # output piped into head or a closed pager
        return 0
    except (IndexStoreError, FileNotFoundError, ValueError, RuntimeError) as exc:  # checkpoint and image errors are ValueErrors
        # Known failure modes get one clear line, not a traceback.
        print(f"indexer {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
