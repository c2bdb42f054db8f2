"""``indexer``: build, update, query and inspect gallery indexes.

    indexer build --checkpoint C --data-root D [--benchmark inshop|consumer2shop] [--split gallery] --out IDX
    indexer build --checkpoint C --images shop_photos/ --out IDX
    indexer add IDX PATHS... ; indexer remove IDX --item ID
    indexer query IDX IMAGE -k 20 [--json] ; indexer info IDX ; indexer merge OUT SHARD...
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional

from fashionnet.checkpoint import CheckpointError
from fashionnet.images import ImageLoadError
from fashionnet.inference import Predictor
from indexer import layout
from indexer.build import add_images, build_index, gallery_rows, parse_shard
from indexer.embedding import folder_catalogue
from indexer.errors import IndexStoreError
from indexer.search import SearchEngine, default_checkpoint
from indexer.store import EmbeddingIndex
from indexer.updates import locked_update, merge


FORCE_HELP = "write into a folder that holds other files (they are left untouched)"
INDEX_CHECKPOINT_HELP = "default: the checkpoint the index was built with"


def _device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="for embedding and search (default auto: GPU when present)")


def _embedding_options(p: argparse.ArgumentParser) -> None:
    """Options of every command that embeds images: build and add."""
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--workers", type=int, default=2, help="processes decoding images (0: decode in the main process)")
    _device_option(p)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="indexer", description="FAISS gallery index of FashionNet embeddings")
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="embed a gallery into a new index (written atomically)")
    b.add_argument("--checkpoint", required=True, help="trained FashionNet checkpoint")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--data-root", help="DeepFashion layout root (In-shop or Consumer-to-shop)")
    src.add_argument("--images", nargs="+", help="files or folders of shop photos with no annotations")
    b.add_argument("--benchmark", default="auto", choices=["auto", "inshop", "consumer2shop"])
    b.add_argument("--split", default="auto", help="gallery split (auto: In-shop 'gallery', Consumer-to-shop 'test'; 'all': every shop image)")
    b.add_argument("--out", required=True, help="index directory to write (an existing index there is replaced atomically)")
    b.add_argument("--force", action="store_true", help=FORCE_HELP)
    b.add_argument("--index-factory", default=None, help="FAISS factory string, e.g. IVF4096,PQ32 or HNSW32 (default: exact inner product)")
    b.add_argument("--nprobe", type=int, default=None, help="IVF lists visited per query (stored as the default)")
    b.add_argument("--train-sample", type=int, default=100_000, help="vectors used to train IVF/PQ indexes")
    b.add_argument("--trained-index", help="start from this trained (IVF) index, so shards share a quantizer")
    b.add_argument("--shard", help="embed only slice i of n (i/n), for building on several machines")
    _embedding_options(b)

    a = sub.add_parser("add", help="embed images or folders and add them to an index")
    a.add_argument("index")
    a.add_argument("paths", nargs="+")
    a.add_argument("--checkpoint", help=INDEX_CHECKPOINT_HELP)
    _embedding_options(a)

    r = sub.add_parser("remove", help="remove every image of an item")
    r.add_argument("index")
    r.add_argument("--item", required=True, action="append", help="item id (repeat for several)")

    q = sub.add_parser("query", help="top-k shop images for a photo")
    q.add_argument("index")
    q.add_argument("image")
    q.add_argument("-k", type=int, default=20)
    q.add_argument("--checkpoint", help=INDEX_CHECKPOINT_HELP)
    q.add_argument("--clothes-type", type=int, choices=[1, 2, 3], help="only results of this clothes type (1 upper, 2 lower, 3 full)")
    q.add_argument("--nprobe", type=int, default=None)
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _device_option(q)

    i = sub.add_parser("info", help="describe an index")
    i.add_argument("index")
    i.add_argument("--json", action="store_true")

    m = sub.add_parser("merge", help="combine shard indexes into one")
    m.add_argument("out")
    m.add_argument("shards", nargs="+")
    m.add_argument("--force", action="store_true", help=FORCE_HELP)
    return parser


def cmd_build(args) -> int:
    # cheap checks first: a wrong --out or --shard must not cost a model load or an embedding run
    layout.check_save_target(Path(args.out).absolute(), force=args.force)
    shard = parse_shard(args.shard)
    for name in ("batch_size", "train_sample"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.nprobe is not None and args.nprobe < 1:
        raise ValueError(f"--nprobe must be at least 1, got {args.nprobe}")
    if args.trained_index:
        layout.read_manifest(Path(args.trained_index).absolute())
    catalogue = gallery_rows(args.data_root, args.benchmark, args.split) if args.data_root else folder_catalogue(args.images)
    if catalogue.empty:
        raise ValueError(f"no images found in {' '.join(args.images)}")
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device)
    report = build_index(predictor, catalogue, args.out, index_factory=args.index_factory, nprobe=args.nprobe, shard=shard,
                         trained_index=args.trained_index, batch_size=args.batch_size, workers=args.workers, device=args.device,
                         checkpoint_path=args.checkpoint, train_sample=args.train_sample, force=args.force,
                         extra={"data_root": str(Path(args.data_root).resolve()) if args.data_root else None})
    print(f"indexed {report.added} images into {args.out} ({report.index.index_factory}, dim {report.index.dim})")
    _report_skipped(report.skipped)
    return 0


def _report_skipped(skipped, what: str = "unreadable image(s)", shown: int = 50) -> None:
    if skipped:
        print(f"skipped {len(skipped)} {what}:", file=sys.stderr)
        for path, problem in skipped[:shown]:
            print(f"  {problem}" if problem.startswith(path) else f"  {path}: {problem}", file=sys.stderr)
        if len(skipped) > shown:
            print(f"  ... and {len(skipped) - shown} more (all listed in the index manifest)", file=sys.stderr)


def cmd_add(args) -> int:
    for path in args.paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
    index = EmbeddingIndex.load(args.index, device="cpu")
    predictor = Predictor.from_checkpoint(default_checkpoint(index, args.checkpoint), device=args.device)
    report = add_images(args.index, predictor, args.paths, batch_size=args.batch_size, workers=args.workers)
    _report_skipped(report.skipped)
    _report_skipped(report.duplicates, "image(s) already in the index")
    if report.added == 0:
        print(f"indexer add: nothing added; the index at {args.index} is unchanged ({report.count} images)", file=sys.stderr)
        return 1
    print(f"added {report.added} images; the index now holds {report.count}")
    return 0


def cmd_remove(args) -> int:
    removed = 0
    with locked_update(args.index) as index:
        for item in args.item:
            ids = index.remove_where("item_id", item)
            if len(ids) == 0:
                print(f"item {item!r} is not in the index", file=sys.stderr)
            removed += len(ids)
        count = index.ntotal
    if not removed:
        print(f"indexer remove: nothing removed; the index at {args.index} is unchanged", file=sys.stderr)
        return 1
    print(f"removed {removed} images; the index now holds {count}")
    return 0


def cmd_query(args) -> int:
    engine = SearchEngine.open(args.index, args.checkpoint, device=args.device)
    result = engine.query(args.image, k=args.k, clothes_type=args.clothes_type, nprobe=args.nprobe)
    cols = ["rank", "score", "item_id", "category", "image_path"]
    if args.json:
        print(json.dumps({"query": str(args.image), "prediction": result.prediction.as_dict(),
                          "results": json.loads(result.matches[cols].to_json(orient="records"))}, indent=2))
    else:
        p = result.prediction
        print(f"query {args.image}: predicted {p.category or '?'} ({p.category_prob:.2f})")
        print(result.matches[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def cmd_info(args) -> int:
    info = EmbeddingIndex.load(args.index, device="cpu").info()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        for key in ("path", "count", "dim", "metric", "index_factory", "index_type", "nlist", "nprobe", "model_checksum",
                    "created_utc", "package_version", "bytes_per_vector_estimate", "memory_bytes_estimate"):
            print(f"{key:26s} {info.get(key)}")
        extra = info.get("extra") or {}
        for key in ("checkpoint", "data_root", "input_side", "image_size", "skipped_count"):  # image_size: older indexes
            if key in extra:
                print(f"{key:26s} {extra[key]}")
    return 0


def cmd_merge(args) -> int:
    merged = merge(args.shards, args.out, force=args.force)
    print(f"merged {len(args.shards)} shards into {args.out}: {merged.ntotal} vectors")
    return 0


COMMANDS = {"build": cmd_build, "add": cmd_add, "remove": cmd_remove, "query": cmd_query, "info": cmd_info, "merge": cmd_merge}


def main(argv: Optional[list[str]] = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="indexer: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except (IndexStoreError, CheckpointError, ImageLoadError, FileNotFoundError, ValueError, RuntimeError) as exc:
        # Known failure modes get one clear line, not a traceback.
        print(f"indexer {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
