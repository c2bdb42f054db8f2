"""The ``fashionnet-train`` options: the parser, and a YAML config file read under the command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from fashionnet.calibration.whitening import DEFAULT_AUGMENTED_VIEWS, DEFAULT_DIM, DEFAULT_SHRINKAGE
from fashionnet.cli.options import data_root_option, device_option, hidden_alias
from fashionnet.models.config import LANDMARK_HEADS, FashionNetConfig
from fashionnet.training.schedule import LOSS_TERMS

DEFAULT_DATA_ROOTS = (Path("data/synth/consumer2shop"), Path("data/synth/inshop"))


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train FashionNet (landmark-pooled retrieval features)", add_help=add_help)
    p.add_argument("--config", type=Path, help="YAML file of option: value pairs (flags given on the command line win)")
    data_root_option(p, several=True, help="benchmark root(s) holding Anno/, Eval/, img/ (default: "
                     + " ".join(map(str, DEFAULT_DATA_ROOTS)) + "). Several roots train on all of them; rows of one item id are "
                     "one item, so give layouts of the same catalogue (e.g. the synthetic inshop and consumer2shop)")
    p.add_argument("--benchmark", default="auto", choices=["auto", "inshop", "consumer2shop"], help="layout of a single --data-root")
    p.add_argument("--output-dir", type=Path, default=Path("runs/fashionnet"), help="checkpoints and logs go here")
    p.add_argument("--resume", default="", help="checkpoint to continue from, or 'auto' for OUTPUT_DIR/checkpoint.pt if present")
    # model
    p.add_argument("--backbone", default="efficientnet_lite0", help="vgg16, resnet50, efficientnet_lite0 or tiny")
    p.add_argument("--weights", default="imagenet", help="'imagenet' (offline package / torchvision cache), 'none', or a .pth path")
    p.add_argument("--image-size", type=int, default=224, help="side of the square training and query images, in pixels")
    p.add_argument("--embedding-dim", type=int, default=256, help="width of the retrieval embedding before whitening")
    p.add_argument("--landmark-head", default=FashionNetConfig.landmark_head, choices=LANDMARK_HEADS, help="soft-argmax heatmaps on conv4, or the paper's fc regression")
    p.add_argument("--appearance-weight", type=float, default=FashionNetConfig.appearance_weight,
                   help="append the global conv5's average pool, weighted so, to the search embedding; the losses do not "
                        "see it (0: the fusion feature alone, as the paper)")
    p.add_argument("--crop-to-bbox", action="store_true", help="crop training images to their bbox (never used at query time)")
    # what transfers to real photos (docs/experiments/transfer_recipe.md)
    p.add_argument("--style-augment", type=float, default=0.0,
                   help="strength of the photographic augmentation (grey, white balance, exposure, noise, blur, JPEG); 0: off")
    p.add_argument("--affine-scale", type=float, nargs=2, default=[0.9, 1.1], metavar=("MIN", "MAX"),
                   help="random zoom of training images (below 1: the garment smaller in the frame)")
    p.add_argument("--affine-degrees", type=float, default=10.0, help="random rotation of training images, +-degrees")
    p.add_argument("--affine-translate", type=float, default=0.05, help="random shift of training images, share of the side")
    # schedule (the paper's iterative weighting)
    p.add_argument("--rounds", type=int, default=2, help="landmark stage + joint stage, repeated this many times")
    p.add_argument("--landmark-epochs", type=int, default=1, help="epochs of the landmark-heavy stage per round")
    p.add_argument("--joint-epochs", type=int, default=3, help="epochs of the equal-weight stage per round")
    p.add_argument("--gt-pooling-epochs", type=int, default=1, help="pool at ground-truth landmarks for the first N epochs")
    p.add_argument("--landmark-stage-weights", type=float, nargs="+", default=[1.0, 1.0, 0.1, 0.1, 0.1, 1.0], metavar="W",
                   help="landmark, visibility, category, attribute, triplet[, box] weights of the landmark stage (box: 1 if left out)")
    p.add_argument("--joint-stage-weights", type=float, nargs="+", default=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0], metavar="W",
                   help="the same six weights for the joint stage")
    # optimisation
    # Long names: torchrun reads abbreviations of its own flags (--p would be its --print-completion).
    p.add_argument("--items-per-batch", type=int, default=8, help="P of the P x K triplet batches")
    p.add_argument("--images-per-item", type=int, default=4, help="K of the P x K triplet batches")
    p.add_argument("--batches-per-epoch", type=int, default=0, help="0: about one pass over the training images")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the heads")
    p.add_argument("--backbone-lr-factor", type=float, default=0.3, help="pretrained trunk learns at lr x this")
    p.add_argument("--freeze-trunk-layers", type=int, default=4,
                   help="keep the first N layers of the pretrained trunk fixed (their BN statistics too); on a CPU, "
                        "skipping their backward pass is the cheapest speed-up (efficientnet_lite0: 4 = up to stride 4)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    p.add_argument("--warmup-steps", type=int, default=50, help="steps of linear learning-rate warm-up")
    p.add_argument("--margin", type=float, default=0.2, help="triplet loss margin")
    p.add_argument("--miner", default="batch_hard", choices=["batch_hard", "semi_hard"], help="how triplets are mined in a batch")
    # after training (fashionnet.calibration); the defaults are the recipe both configs train
    p.add_argument("--whiten-dim", type=int, default=DEFAULT_DIM,
                   help="after training, fit a learned whitening of [fusion, appearance, landmark windows, colours, detail "
                        "windows] on the training photos and search with this many whitened dimensions (fashionnet.calibration.whitening); 0: off")
    p.add_argument("--colour-window", type=float, default=FashionNetConfig.colour_window,
                   help="the whitening also reads the image's colours around each landmark, in windows of this fraction of "
                        "the input side (FashionNetConfig.colour_window; no weights, training is unchanged); 0: off")
    p.add_argument("--detail-window", type=float, default=FashionNetConfig.detail_window,
                   help="the whitening also reads the trunk's stride-4 and stride-8 maps at each landmark, in windows of this "
                        "fraction of the input side (FashionNetConfig.detail_window; no weights, training is unchanged); 0: off")
    p.add_argument("--whiten-by-part", action=argparse.BooleanOptionalAction, default=True,
                   help="fit the whitening on each part of the descriptor alone (appearance, landmark windows, landmark colours, "
                        "detail windows) and give each part's cosine the same say (FashionNetConfig.whiten_by_part)")
    p.add_argument("--whiten-shrinkage", type=float, default=DEFAULT_SHRINKAGE, help="shrinkage of the whitening's within-item covariance")
    p.add_argument("--whiten-augmented-views", type=int, default=DEFAULT_AUGMENTED_VIEWS,
                   help="passes over the training photos through the training augmentation, besides the plain one, for the whitening")
    p.add_argument("--grad-clip", type=float, default=5.0, help="clip the gradient norm to this")
    # machinery
    device_option(p)
    p.add_argument("--amp", default="auto", choices=["auto", "on", "off"], help="mixed precision (auto: on for CUDA)")
    p.add_argument("--workers", type=int, default=-1, help="DataLoader worker processes (-1: 0 on CPU, where workers compete with "
                   "the model for the same cores, and 4 on CUDA)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--deterministic", action="store_true", help="use deterministic algorithms only")
    p.add_argument("--max-queries", dest="val_max_queries", type=int, default=300, help="cap validation queries per epoch (0: all)")
    hidden_alias(p, "--val-max-queries", dest="val_max_queries", type=int)  # configs/demo.yaml and older scripts
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of training items held out when the layout has no val split")
    p.add_argument("--collapse-min-spread", type=float, default=0.01, help="spread of the predicted landmarks (normalised image units) below which they count as collapsed")
    p.add_argument("--collapse-patience", type=int, default=50, help="collapsed checks in a row before training stops with an error")
    p.add_argument("--time-limit-minutes", type=float, default=0.0, help="stop after the epoch that passes this budget (0: no limit)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--log-every", type=int, default=10, help="a row of OUTPUT_DIR/train_log.csv every N steps (0: one per epoch)")
    p.add_argument("--tensorboard", action="store_true", help="also write scalars to OUTPUT_DIR/tensorboard/ (needs the tensorboard package)")
    p.add_argument("--ood-images", type=int, default=1200,
                   help="training photos the out-of-distribution density is fitted on after training (0: none; fashionnet.calibration.ood)")
    return p


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.config:
        import yaml

        with open(args.config) as fh:
            values = yaml.safe_load(fh) or {}
        # a key is a flag without its dashes (max-queries, max_queries) or the name argparse gives it (val_max_queries)
        known = {a.dest: a.dest for a in parser._actions}
        known.update({o.lstrip("-").replace("-", "_"): a.dest for a in parser._actions for o in a.option_strings
                      if o.startswith("--") and not (o.startswith("--no-") and isinstance(a, argparse.BooleanOptionalAction))})
        unknown = sorted(k for k in values if k.replace("-", "_") not in known)
        if unknown:
            parser.error(f"{args.config}: unknown option(s) {', '.join(unknown)}")
        values = {known[k.replace("-", "_")]: v for k, v in values.items()}
        config_roots = values.pop("data_root", None)  # --data-root adds to a default list, so it is filled in below
        parser.set_defaults(**values)
        args = parser.parse_args(argv)
        if args.data_root is None and config_roots is not None:
            args.data_root = [Path(r) for r in ([config_roots] if isinstance(config_roots, (str, Path)) else config_roots)]
    if args.data_root is None:
        args.data_root = list(DEFAULT_DATA_ROOTS)
    for name in ("landmark_stage_weights", "joint_stage_weights"):
        if len(getattr(args, name)) not in (len(LOSS_TERMS) - 1, len(LOSS_TERMS)):
            parser.error(f"--{name.replace('_', '-')} takes {len(LOSS_TERMS) - 1} or {len(LOSS_TERMS)} weights "
                         f"({', '.join(LOSS_TERMS)}), got {len(getattr(args, name))}")
    return args
