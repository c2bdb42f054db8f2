#!/usr/bin/env python
"""Fit a learned whitening (fashionnet.calibration.whitening) for a trained checkpoint and write the result as
a new checkpoint; the input is left as it was.

Training fits it itself with --whiten-dim; use this for a checkpoint trained without it:

    python scripts/fit_whitening.py --checkpoint runs/demo/checkpoint.pt --out runs/demo_whitened/checkpoint.pt

It reads the training photos the checkpoint was trained on (its --data-root, val fraction and seed,
unless --data-root is given). Indexes built with the input checkpoint do not fit the output one
(its embedding is different); rebuild them.
"""

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from fashionnet.cli.errors import run_main  # noqa: E402
from fashionnet.cli.options import data_root_option, device_option, hidden_alias  # noqa: E402
from fashionnet.device import resolve_device  # noqa: E402
from fashionnet.models import create_model  # noqa: E402
from fashionnet.models.checkpoint import atomic_torch_save, input_side, load_checkpoint, model_from_checkpoint, replace_model  # noqa: E402
from fashionnet.training.args import get_args_parser as training_args_parser  # noqa: E402
from fashionnet.training.data import read_training_frames, split_for_training, training_transform  # noqa: E402
from fashionnet.calibration.whitening import (
    DEFAULT_AUGMENTED_VIEWS,
    DEFAULT_DIM,
    DEFAULT_SHRINKAGE,
    WHITENING_BUFFERS,
    whiten_model,
)  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="trained FashionNet checkpoint to whiten (left as it is)")
    p.add_argument("--out", type=Path, required=True,
                   help="the new checkpoint written: --checkpoint with the fitted whitening (must differ from --checkpoint)")
    data_root_option(p, several=True, help="training layouts (default: the ones the checkpoint was trained on)")
    # the same spellings as training's (fashionnet/training/args.py); the old ones still work
    p.add_argument("--whiten-dim", type=int, default=DEFAULT_DIM, help="whitened dimensions (below the number of training items)")
    hidden_alias(p, "--dim", dest="whiten_dim", type=int)
    p.add_argument("--whiten-shrinkage", type=float, default=DEFAULT_SHRINKAGE, help="shrinkage of the whitening's within-item covariance")
    hidden_alias(p, "--shrinkage", dest="whiten_shrinkage", type=float)
    p.add_argument("--whiten-by-part", action=argparse.BooleanOptionalAction, default=None,
                   help="whiten each part of the descriptor alone (FashionNetConfig.whiten_by_part); default: as the checkpoint has it")
    hidden_alias(p, "--by-part", dest="whiten_by_part", action=argparse.BooleanOptionalAction)
    p.add_argument("--whiten-augmented-views", type=int, default=DEFAULT_AUGMENTED_VIEWS,
                   help="extra passes over the training photos through the checkpoint's training augmentation")
    hidden_alias(p, "--augmented-views", dest="whiten_augmented_views", type=int)
    p.add_argument("--colour-window", type=float, default=None,
                   help="also read the landmark colours (FashionNetConfig.colour_window, a fraction of the input side; "
                        "0: not); default: as the checkpoint has it")
    p.add_argument("--detail-window", type=float, default=None,
                   help="also read the trunk's finer maps at the landmarks (FashionNetConfig.detail_window, a fraction of the "
                        "input side; 0: not); default: as the checkpoint has it")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    device_option(p)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


# What the descriptor reads without weights; a trained model can change them (buffers of the same names).
DESCRIPTOR_SETTINGS = ("colour_window", "detail_window")


def with_descriptor_settings(model, config, **settings):
    """The same weights in a model whose descriptor has (or lacks) the landmark colours or detail
    windows as ``settings`` say; the old whitening, which was fitted on the other descriptor, is dropped."""
    try:
        config = dataclasses.replace(config, **settings, whiten_dim=0)
    except ValueError as exc:
        raise SystemExit(f"--colour-window / --detail-window: {exc}") from None
    rebuilt = create_model(config, load_pretrained=False)
    recorded = (*WHITENING_BUFFERS, *DESCRIPTOR_SETTINGS)  # buffers that record settings, not trained weights
    state = {k: v for k, v in model.state_dict().items() if k not in recorded}
    state.update({k: v for k, v in rebuilt.state_dict().items() if k in recorded})
    rebuilt.load_state_dict(state)
    return rebuilt, config


def main(argv=None) -> Path:
    args = get_args_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.out.resolve() == args.checkpoint.resolve():
        raise SystemExit(f"--out {args.out}: give a new path; the input checkpoint is kept as it is")
    ckpt = load_checkpoint(args.checkpoint)
    model, config = model_from_checkpoint(ckpt, args.checkpoint)
    asked = {name: getattr(args, name) for name in DESCRIPTOR_SETTINGS if getattr(args, name) is not None}
    if any(getattr(config, name) != value for name, value in asked.items()):
        model, config = with_descriptor_settings(model, config, **asked)
    by_part = config.whiten_by_part if args.whiten_by_part is None else args.whiten_by_part
    model.eval()
    trained = ckpt.get("args", {})
    roots = args.data_root or [Path(r) for r in trained.get("data_root", [])]
    if not roots:
        raise SystemExit(f"{args.checkpoint}: it does not say what it was trained on; give --data-root")
    frame, root, _ = read_training_frames(roots)
    train, _, _ = split_for_training(frame, float(trained.get("val_fraction", 0.1)), int(trained.get("seed", 0)))
    side = input_side(ckpt["preprocessing"], config)
    # the checkpoint's own training augmentation (flags it was saved before default as training does)
    augment = training_transform(argparse.Namespace(**{**vars(training_args_parser().parse_args([])), **trained, "image_size": side}))
    started = time.time()
    device = resolve_device(args.device)
    model.to(device)
    try:
        line = whiten_model(model, train, root, side, device, args.whiten_dim, args.whiten_shrinkage, augment=augment,
                            augmented_views=args.whiten_augmented_views, seed=int(trained.get("seed", 0)), batch_size=args.batch_size,
                            progress=not args.no_progress, by_part=by_part)
    except ValueError as exc:
        raise SystemExit(f"{args.checkpoint}: {exc}") from None
    model.cpu()  # the checkpoint keeps CPU tensors, whichever device fitted the whitening
    replace_model(ckpt, model)
    ckpt.setdefault("args", {}).update(**{name: getattr(config, name) for name in DESCRIPTOR_SETTINGS},
                                       whiten_dim=args.whiten_dim, whiten_shrinkage=args.whiten_shrinkage, whiten_by_part=by_part,
                                       whiten_augmented_views=args.whiten_augmented_views)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(ckpt, args.out)
    print(f"{args.out}: {line}, in {time.time() - started:.0f} s")
    return args.out


if __name__ == "__main__":
    sys.exit(run_main(main))
