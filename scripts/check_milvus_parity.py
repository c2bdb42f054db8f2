#!/usr/bin/env python
"""Do a FAISS index and a Milvus index of one gallery answer alike?

Embeds every query photo of a Consumer-to-shop layout's test split once (with the FAISS index's
model), then asks both indexes for the top k items, each at its best view, as `indexer query`
does: without filters, with the query's own predicted clothes type, and with its predicted
category. Prints, per setting, the share of queries whose top k (the ordered image paths) is the
same on both, and the mean overlap of the two top-k sets; exits 1 when a share is under
--min-agreement. It is a check, not a test.

    python scripts/check_milvus_parity.py --faiss-index indexes/demo --milvus-index /tmp/demo_milvus \
        --data-root data/synth/consumer2shop
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fashionnet.cli.errors import run_main  # noqa: E402
from fashionnet.cli.options import data_root_option, device_option  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faiss-index", required=True, help="the FAISS index folder (e.g. a Flat index from `indexer build`)")
    p.add_argument("--milvus-index", required=True, help="the Milvus index folder of the same gallery and model (`indexer build --backend milvus`)")
    data_root_option(p, several=False, type=str, help="Consumer-to-shop layout whose test-split consumer photos are the queries")
    p.add_argument("-k", type=int, default=20, help="results compared per query (default 20)")
    p.add_argument("--max-queries", type=int, default=0, help="compare only the first N queries (0: all)")
    p.add_argument("--min-agreement", type=float, default=0.99, help="share of queries with the same top k below which it fails")
    p.add_argument("--out", help="JSON file written with the figures")
    device_option(p)
    return p


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    from fashionnet.data.readers import read_benchmark
    from fashionnet.evaluation.protocols import query_frame
    from indexer.search import Filters, SearchEngine

    if not args.data_root:
        raise ValueError("--data-root is needed: the Consumer-to-shop layout whose consumer photos are the queries")
    faiss_engine = SearchEngine.open(args.faiss_index, device=args.device, runtime="torch", backend="faiss")
    milvus_engine = SearchEngine.open(args.milvus_index, device=args.device, runtime="torch", backend="milvus")
    if faiss_engine.predictor.model_checksum != milvus_engine.predictor.model_checksum:
        raise ValueError(f"the two indexes were built by different models ({faiss_engine.predictor.model_checksum} and "
                         f"{milvus_engine.predictor.model_checksum}); build both with one checkpoint")
    root = Path(args.data_root)
    queries = query_frame(read_benchmark(root, "consumer2shop"), "consumer2shop")
    paths = [str(root / p) for p in queries["image_path"]]
    if args.max_queries:
        paths = paths[: args.max_queries]
    settings = {"no filter": lambda p: None, "own clothes type": lambda p: Filters(clothes_type=p.clothes_type),
                "own category": lambda p: Filters(category=p.category)}
    same = {name: 0 for name in settings}
    overlap = {name: 0.0 for name in settings}
    for path in paths:
        prediction = faiss_engine.predictor.predict(path)
        for name, filters_of in settings.items():
            filters = filters_of(prediction)
            tops = [list(e.search_embedding(prediction.embedding, args.k, filters, per_item=True)["image_path"])
                    for e in (faiss_engine, milvus_engine)]
            same[name] += tops[0] == tops[1]
            overlap[name] += len(set(tops[0]) & set(tops[1])) / max(1, len(tops[0]))
    report = {"queries": len(paths), "k": args.k, "faiss_index": args.faiss_index, "milvus_index": args.milvus_index,
              "same_top_k": {name: same[name] / len(paths) for name in settings},
              "mean_overlap": {name: overlap[name] / len(paths) for name in settings}}
    for name in settings:
        print(f"{name:18s} same top-{args.k}: {same[name]}/{len(paths)} ({100 * same[name] / len(paths):.1f}%), "
              f"mean overlap {100 * overlap[name] / len(paths):.1f}%")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if min(report["same_top_k"].values()) >= args.min_agreement else 1


if __name__ == "__main__":
    sys.exit(run_main(main))
