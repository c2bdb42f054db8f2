#!/usr/bin/env python
"""How often an index calls a photo's best result a close match (indexer.close_match), on three
kinds of photos, through the same SearchEngine the page, the CLI and the API use:

1. held-out consumer photos whose item IS in the gallery (the protocol's test-split consumer photos
   of the layout the index was built from): should be called a match;
2. consumer photos of items NOT in it (by default the synthetic style-shift split, whose items no
   Consumer-to-shop gallery holds): should not;
3. photos without a garment (fashionnet.calibration.ood's plain colours, noise, gradients and
   patterns): never.

    python scripts/measure_close_match.py --index indexes/demo --absent data/synth/style_shift

With ``--recalls`` it also refits the close-match score at other stated recalls (the index's own
held-out photos, as ``indexer build --match-recall`` would) and gives the same three rates for each:
the trade-off between missing real matches and calling strangers a match.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from fashionnet.calibration.ood import non_garment_probes  # noqa: E402
from fashionnet.cli.errors import run_main  # noqa: E402
from fashionnet.cli.options import device_option, runtime_option  # noqa: E402
from fashionnet.data.readers import read_benchmark  # noqa: E402
from fashionnet.evaluation.protocols import query_frame  # noqa: E402
from indexer.close_match import fit_close_match  # noqa: E402
from indexer.search import SearchEngine  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", required=True, help="the index to measure")
    p.add_argument("--checkpoint", help="default: the checkpoint the index was built with")
    p.add_argument("--queries", help="DeepFashion root whose test-split consumer photos have their items in the gallery "
                                     "(default: the data root the index was built from)")
    p.add_argument("--absent", default="data/synth/style_shift", help="DeepFashion root of items the gallery does not hold")
    p.add_argument("--probes", type=int, default=20, help="non-garment photos of each kind")
    p.add_argument("--recalls", type=float, nargs="*", default=[], help="also refit the score at these stated recalls")
    p.add_argument("--batch-size", type=int, default=16, help="photos per forward pass")
    device_option(p)
    runtime_option(p)
    return p


def consumer_photos(root: Path) -> tuple[list[str], list[str]]:
    """The test-split consumer photos of a layout and their items (all of them for a test-only split)."""
    frame = read_benchmark(root, "consumer2shop", verify_images=False)
    rows = query_frame(frame, "consumer2shop").drop_duplicates("image_path")
    return [str(root / p) for p in rows["image_path"]], rows["item_id"].astype(str).tolist()


def best_results(engine: SearchEngine, photos: list, batch_size: int) -> tuple[np.ndarray, np.ndarray, list]:
    """(best score, flagged unfamiliar, best item) of each photo."""
    scores, flagged, items = [], [], []
    for start in range(0, len(photos), batch_size):
        for prediction in engine.predictor.predict_batch(photos[start:start + batch_size]):
            top = engine.search_embedding(prediction.embedding, k=1, per_item=True)
            scores.append(float(top["score"].iloc[0]))
            items.append(str(top["item_id"].iloc[0]))
            flagged.append(bool(prediction.unfamiliar))
    return np.array(scores), np.array(flagged), items


def match_share(scores: np.ndarray, flagged: np.ndarray, min_score: float) -> float:
    return float(np.mean((scores >= min_score) & ~flagged)) if len(scores) else float("nan")


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    engine = SearchEngine.open(args.index, args.checkpoint, device=args.device, runtime=args.runtime)
    close = engine.close_match
    if close is None:
        raise SystemExit(f"{args.index} has no close-match score, and its checkpoint no held-out photos to fit one "
                         "(python scripts/fit_close_match.py --checkpoint ...)")
    print(close.describe())
    gallery_items = set(engine.index.metadata["item_id"].astype(str))
    queries = Path(args.queries or engine.data_root or "")
    photos, items = consumer_photos(queries)
    kept = [i for i, item in enumerate(items) if item in gallery_items]
    in_photos, in_items = [photos[i] for i in kept], [items[i] for i in kept]
    absent_photos, absent_items = consumer_photos(Path(args.absent))
    absent_photos = [p for p, item in zip(absent_photos, absent_items) if item not in gallery_items]
    probes = [image for images in non_garment_probes(n_per_kind=args.probes, seed=1).values() for image in images]

    measured = {}
    for name, group in (("in", in_photos), ("absent", absent_photos), ("probes", probes)):
        measured[name] = best_results(engine, group, args.batch_size)
    top1 = np.mean([found == item for found, item in zip(measured["in"][2], in_items)])

    print(f"\n| photos | photos | called a close match | flagged unfamiliar |\n|---|---:|---:|---:|")
    labels = {"in": f"held-out consumer photos whose item is in the gallery ({queries.name}, test split; top-1 right: {top1:.1%})",
              "absent": f"consumer photos of items not in the gallery ({Path(args.absent).name})",
              "probes": "photos without a garment (plain, noise, gradients, patterns)"}
    for name, (scores, flagged, _) in measured.items():
        print(f"| {labels[name]} | {len(scores)} | {match_share(scores, flagged, close.min_score):.1%} | {np.mean(flagged):.1%} |")

    if args.recalls:
        print("\n| stated recall | close-match score | items in the gallery | items not in it | no garment |\n|---:|---:|---:|---:|---:|")
        for recall in args.recalls:
            refit = fit_close_match(engine.index, engine.predictor.match_reference, recall)
            shares = [match_share(scores, flagged, refit.min_score) for scores, flagged, _ in measured.values()]
            print(f"| {recall:.2f} | {refit.min_score:.3f} | " + " | ".join(f"{s:.1%}" for s in shares) + " |")


if __name__ == "__main__":
    sys.exit(run_main(main))
