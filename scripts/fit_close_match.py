#!/usr/bin/env python
"""Store the held-out photos an index fits its close-match score on (fashionnet.calibration.close_match)
in a checkpoint trained before training stored them itself:

    python scripts/fit_close_match.py --checkpoint runs/demo/checkpoint.pt

The photos are the checkpoint's own validation split (its items never trained on): Consumer-to-shop's
val consumer photos against the val shop photos, or for In-shop the items training held out. Indexes
built afterwards record their close-match score (``indexer info``); an index built before fits it
when it is opened.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from fashionnet.calibration.close_match import store_match_reference  # noqa: E402
from fashionnet.cli.errors import run_main  # noqa: E402
from fashionnet.cli.options import data_root_option, device_option  # noqa: E402
from fashionnet.inference.predictor import Predictor  # noqa: E402
from fashionnet.models.checkpoint import load_checkpoint  # noqa: E402
from fashionnet.training.data import read_training_frames, split_for_training  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path, help="trained checkpoint; the reference is written into it")
    data_root_option(p, several=True, help="the layouts the checkpoint was trained on (default: those its training recorded)")
    device_option(p)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--batch-size", type=int, default=32, help="photos per forward pass")
    return p


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    trained_with = load_checkpoint(args.checkpoint).get("args") or {}
    roots = args.data_root or trained_with.get("data_root")
    if not roots:
        raise SystemExit(f"{args.checkpoint} records no data roots; pass --data-root")
    roots = [Path(r) for r in ([roots] if isinstance(roots, (str, Path)) else roots)]
    frame, data_root, _ = read_training_frames(roots)
    # the split training made: its validation items were never trained on
    _, queries, gallery = split_for_training(frame, float(trained_with.get("val_fraction", 0.1)), int(trained_with.get("seed", 0)))
    started = time.time()
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device)
    if store_match_reference(args.checkpoint, predictor, queries, gallery, data_root, args.batch_size) is None:
        raise SystemExit(1)
    print(f"stored in {args.checkpoint} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    sys.exit(run_main(main))
