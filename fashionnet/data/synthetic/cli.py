"""Command line of the synthetic benchmark generator (the ``fashionnet-synth`` console script)."""

from __future__ import annotations

import argparse
import json
import sys

from fashionnet.data.synthetic.preview import write_preview
from fashionnet.data.synthetic.vocabulary import SIZES
from fashionnet.data.synthetic.writers import RenderError, generate_synthetic_deepfashion


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Generate a synthetic DeepFashion benchmark (In-shop and Consumer-to-shop layouts).")
    parser.add_argument("--out", required=True,
                        help="the benchmark folder written: inshop/, consumer2shop/ and style_shift/ layouts and SYNTHETIC.json "
                             "(replaced if this generator wrote it)")
    parser.add_argument("--size", default="default", choices=sorted(SIZES), help="how many items and photos")
    parser.add_argument("--seed", type=int, default=0, help="random seed (the same seed writes the same images)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
    parser.add_argument("--preview", default=None, help="also write a contact sheet PNG here")
    parser.add_argument("--backgrounds", default=None, help="folder of your own background photos to mix into the scenes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``fashionnet-synth --out DIR [--size default] [--seed 0] [--workers N] [--preview PNG] [--backgrounds DIR]``."""
    args = get_args_parser().parse_args(argv)
    try:
        summary = generate_synthetic_deepfashion(
            args.out, size=args.size, seed=args.seed, workers=args.workers, progress=not args.quiet, backgrounds=args.backgrounds
        )
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RenderError as exc:  # nothing was moved into --out: the output is built aside and swapped in
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.preview:
        summary["preview"] = str(write_preview(args.out, args.preview))
    print(json.dumps(summary, indent=1))
    return 0
