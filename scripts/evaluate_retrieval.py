#!/usr/bin/env python
"""DeepFashion top-k retrieval evaluation with baselines and ablations (a)-(d) in one run.

    python scripts/evaluate_retrieval.py --checkpoint runs/default/checkpoint.pt \
        --data-root data/synth/consumer2shop --out reports/

Writes <benchmark>.json, <benchmark>.md (markdown table) and <benchmark>_topk.png into --out.
The table also checks what the page shows of each query photo against its annotations
("real_photo" in the JSON): the garment box's IoU, the clothes type, the NE of the points marked
sure and unsure, and the NE of the mean layout placed in the predicted and the annotated box. On
real photos (e.g. an In-shop folder of annotated real photos) these say where the model fails.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fashionnet.cli.errors import run_main  # noqa: E402
from fashionnet.cli.options import data_root_option, device_option  # noqa: E402
from fashionnet.evaluation.benchmark import VARIANTS, evaluate_checkpoint  # noqa: E402
from fashionnet.evaluation.report import markdown_table, write_report  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="trained FashionNet checkpoint to evaluate")
    data_root_option(p, several=True, type=str, required=True, help="benchmark root(s), each evaluated on its own")
    p.add_argument("--benchmark", default="auto", choices=["auto", "inshop", "consumer2shop"],
                   help="layout of the roots (default auto: told from each root's annotation files)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), help="what to evaluate (default: all)")
    p.add_argument("--baseline-weights", default="imagenet", help="weights for variant (a): 'imagenet' or a .pth path")
    p.add_argument("--out", type=Path, default=Path("reports"),
                   help="folder written: per root NAME.json (all metrics), the table as markdown, and NAME_topk.png (default reports)")
    device_option(p)
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--workers", type=int, default=2, help="processes decoding images (0: decode in the main process)")
    p.add_argument("--max-queries", type=int, default=0, help="evaluate a random subset of queries (0: all)")
    p.add_argument("--retrieval-time", action="store_true",
                   help="also measure (c) with flip averaging and item aggregation, each alone and together")
    p.add_argument("--crop-below", type=float, default=None,
                   help="crop photos whose predicted garment box covers less than this share and embed again, as the "
                        "product does (default: the Predictor's; 0: one pass)")
    p.add_argument("--no-flip-average", action="store_true",
                   help="evaluate (c) with the plain embedding, not averaged with the mirror image's as the product does")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    weights = True if args.baseline_weights == "imagenet" else args.baseline_weights
    for root in args.data_root:
        results = evaluate_checkpoint(args.checkpoint, root, args.benchmark, args.variants, device=args.device, batch_size=args.batch_size,
                                      workers=args.workers, baseline_weights=weights, max_queries=args.max_queries, progress=not args.no_progress,
                                     retrieval_time=args.retrieval_time, crop_below=args.crop_below,
                                      flip_average=not args.no_flip_average)
        paths = write_report(results, args.out)
        print(markdown_table(results))
        print("wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    sys.exit(run_main(main))
