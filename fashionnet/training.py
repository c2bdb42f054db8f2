"""Train FashionNet on an In-shop or Consumer-to-shop layout (synthetic or real).

Laid out like torchvision's references/classification/train.py: ``get_args_parser``,
``train_one_epoch``, ``evaluate`` and ``main``. ``scripts/train_fashionnet.py`` and the
``fashionnet-train`` command both call :func:`main`.

    python scripts/train_fashionnet.py --data-root data/synth/consumer2shop --output-dir runs/demo
    python scripts/train_fashionnet.py --data-root data/synth/consumer2shop data/synth/inshop ...  # both layouts
    torchrun --nproc_per_node 2 scripts/train_fashionnet.py ...   # DDP (gloo on CPU, nccl on CUDA)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fashionnet import __version__
from fashionnet.checkpoint import load_checkpoint, save_checkpoint, without_retired_settings
from fashionnet.cli_errors import run_main
from fashionnet.cli_options import data_root_option, device_option, hidden_alias
from fashionnet.data.dataset import DeepFashionDataset, collate_skip_none, make_label_map
from fashionnet.data.readers import read_attribute_names, read_benchmark
from fashionnet.data.samplers import PKSampler
from fashionnet.data.schema import landmarks_of
from fashionnet.data.style_augment import StyleAugment, StyledTransform
from fashionnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, AffineJitter, build_transforms
from fashionnet.evaluation import embed_dataset, landmarks_to_original_pixels, predicted_landmark_outputs
from fashionnet.runtime import init_distributed, resolve_device, seed_everything, seed_worker
from fashionnet.losses import AttributeLoss, FashionNetLosses
from fashionnet.metrics import normalized_error, retrieval_metrics
from fashionnet.models import FashionNetConfig, create_model
from fashionnet.models.fashionnet import LANDMARK_HEADS
from fashionnet.protocols import protocol_frames
from fashionnet.whitening import DEFAULT_AUGMENTED_VIEWS, DEFAULT_DIM, DEFAULT_SHRINKAGE, WHITENING_BUFFERS
from fashionnet.calibration import store_calibration
from fashionnet.schedule import LOSS_TERMS, IterativeSchedule, LandmarkCollapseGuard, StageWeights
from fashionnet.training_log import TrainingLog

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
                        "windows] on the training photos and search with this many whitened dimensions (fashionnet.whitening); 0: off")
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
                   help="training photos the out-of-distribution density is fitted on after training (0: none; fashionnet.ood)")
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


# ----------------------------------------------------------------------------------------- data


def split_for_training(frame: pd.DataFrame, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, val_queries, val_gallery) frames.

    Consumer-to-shop has a val split: consumer images of val items query the shop images of val items.
    In-shop has none, so a share of the training items is held out; each held-out item's first image
    queries the rest.
    """
    if (frame["split"] == "val").any() and (frame["source"] == "consumer").any():
        queries, gallery = protocol_frames(frame, "consumer2shop", split="val")
        return frame[frame["split"] == "train"], queries, gallery
    train = frame[frame["split"] == "train"]
    items = np.array(sorted(train["item_id"].unique()))
    rng = np.random.default_rng(seed)
    held = set(rng.choice(items, size=max(2, int(round(len(items) * val_fraction))), replace=False)) if len(items) > 4 else set()
    val = train[train["item_id"].isin(held)].sort_values("image_path")
    first = ~val.duplicated("item_id")
    queries, gallery = val[first], val[~first]
    queries = queries[queries["item_id"].isin(set(gallery["item_id"]))]
    return train[~train["item_id"].isin(held)], queries, gallery


def read_training_frames(roots: list[Path], benchmark: Optional[str] = None) -> tuple[pd.DataFrame, Path, list[str]]:
    """Read one or more layouts into one frame whose image paths are relative to a common root.

    Returns (frame, common root, attribute names). Layouts must agree on the attribute list.
    """
    roots = [Path(r).resolve() for r in roots]
    common = Path(os.path.commonpath(roots)) if len(roots) > 1 else roots[0]
    frames, attribute_names = [], None
    for root in roots:
        frame = read_benchmark(root, benchmark if len(roots) == 1 else None)
        names = read_attribute_names(root) if frame["attributes"].notna().any() else []
        if attribute_names is not None and names != attribute_names:
            raise SystemExit(f"{root}: its attribute list differs from {roots[0]}'s; train on layouts of one catalogue")
        attribute_names = names
        prefix = root.relative_to(common)
        frame["image_path"] = [str(prefix / p) for p in frame["image_path"]]
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    # An item in train in one layout and val/test in another would leak evaluation items into training.
    leaking = sorted(set(frame.loc[frame["split"] == "train", "item_id"]) & set(frame.loc[frame["split"] != "train", "item_id"]))
    if leaking:
        raise SystemExit(f"items {leaking[:5]} are training items in one layout and evaluation items in another")
    return frame, common, attribute_names or []


def attribute_matrix(frame: pd.DataFrame, num_attributes: int) -> np.ndarray:
    """(N, A) int8 labels in {1, -1, 0}; rows without attributes are all 0 (unknown)."""
    out = np.zeros((len(frame), num_attributes), dtype=np.int8)
    for i, a in enumerate(frame["attributes"].tolist()):
        if a is not None and len(a) == num_attributes:
            out[i] = a
    return out


# -------------------------------------------------------------------------------------- training


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def frozen_trunk_layers(model, n: int) -> list[torch.nn.Module]:
    """The first ``n`` layers of the trunk, with gradients switched off."""
    layers = list(model.trunk.children())[:n]
    for layer in layers:
        layer.requires_grad_(False)
    return layers


@dataclass
class TrainingRun:
    """What every training step needs, built once by :func:`main`."""

    model: torch.nn.Module  # the one that is stepped (DDP-wrapped when distributed)
    losses: FashionNetLosses
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    schedule: IterativeSchedule
    guard: LandmarkCollapseGuard
    scaler: torch.amp.GradScaler
    amp_dtype: Optional[torch.dtype]
    device: torch.device
    frozen_layers: list
    grad_clip: float
    show_progress: bool
    log: Optional[TrainingLog] = None  # rank 0's curves; None on the other ranks


def train_one_epoch(run: TrainingRun, loader, epoch: int) -> dict[str, float]:
    """One pass over ``loader`` with the epoch's loss weights; returns the mean of each loss term."""
    run.model.train()
    for layer in run.frozen_layers:
        layer.eval()  # frozen layers keep their pretrained BN statistics
    schedule = run.schedule
    weights = schedule.weights(epoch)
    gt_pool = schedule.pool_on_ground_truth(epoch)
    sums = {t: 0.0 for t in (*LOSS_TERMS, "total")}
    n = 0
    if run.log is not None:
        run.log.begin_epoch(epoch)
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{schedule.total_epochs} [{schedule.stage(epoch)}{', gt-pool' if gt_pool else ''}]",
               disable=not run.show_progress, dynamic_ncols=True, leave=True)
    for batch in bar:
        batch = _to_device(batch, run.device)
        with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
            out = run.model(batch["image"], batch["landmarks"].nan_to_num(0.0) if gt_pool else None, batch["visibility"] if gt_pool else None)
            terms = run.losses(out, batch)
        total = sum(weights[t] * terms[t] for t in LOSS_TERMS)
        if not torch.isfinite(total):
            raise FloatingPointError(f"epoch {epoch + 1}: loss became {total.item()} ({ {t: round(float(v), 4) for t, v in terms.items()} }); lower --lr")
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(total).backward()
        if run.grad_clip > 0:
            run.scaler.unscale_(run.optimizer)
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.grad_clip)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        lrs = [group["lr"] for group in run.optimizer.param_groups]  # the rates this step used
        run.scheduler.step()
        run.guard.check(out["landmarks"])
        n += 1
        values = {**{t: float(terms[t].detach()) for t in LOSS_TERMS}, "total": float(total.detach())}
        for t, v in values.items():
            sums[t] += v
        if run.log is not None:
            run.log.step(run.scheduler.last_epoch, values, lrs, len(batch["image"]))
        bar.set_postfix({("lm" if t == "landmark" else t[:4]): f"{sums[t] / n:.3f}" for t in LOSS_TERMS}, refresh=False)
    return {t: v / max(n, 1) for t, v in sums.items()}


def evaluate(model, query_set: DeepFashionDataset, gallery_set: DeepFashionDataset, device, args, ks=(1, 5, 10, 20)) -> dict[str, Any]:
    """Top-k retrieval of held-out queries against their gallery, and landmark NE on the queries."""
    model.eval()
    embed = lambda ds, desc: embed_dataset(model, ds, device, args.eval_batch_size, args.workers, predicted_landmark_outputs, desc,  # noqa: E731
                                           not args.no_progress)
    q, g = embed(query_set, "val queries"), embed(gallery_set, "val gallery")
    q_items = query_set.frame["item_id"].to_numpy()[q["index"]]
    g_items = gallery_set.frame["item_id"].to_numpy()[g["index"]]
    ks = tuple(k for k in ks if k <= len(g_items)) or (1,)
    retrieval = retrieval_metrics(q["embedding"], q_items, g["embedding"], g_items, ks=ks, show_progress=False)
    rows = query_set.frame.iloc[q["index"]]
    true_xy, vis = landmarks_of(rows)
    pred_xy = landmarks_to_original_pixels(q["landmarks"], q["original_size"], args.image_size)
    ne = normalized_error(pred_xy, true_xy, vis, q["original_size"])
    return {"top_k": retrieval["top_k"], "map_at_r": retrieval["map_at_r"], "ne": ne["average"],
            "ne_per_landmark": ne["per_landmark"], "num_queries": len(q_items), "num_gallery": len(g_items)}


# ------------------------------------------------------------------------------------------ main


def build_sampler(train_set: DeepFashionDataset, args, batches: int) -> PKSampler:
    """P x K batches of random items, this rank's share of them."""
    return PKSampler(train_set.item_per_row, p=args.items_per_batch, k=args.images_per_item, seed=args.seed,
                     num_batches=batches * args.world_size, rank=args.rank, world_size=args.world_size)


def build_optimizer(model, args) -> torch.optim.Optimizer:
    trunk = [p for n, p in model.named_parameters() if n.startswith("trunk.") and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith("trunk.") and p.requires_grad]
    trunk_lr = args.lr * (args.backbone_lr_factor if args.weights != "none" else 1.0)
    groups = [{"params": trunk, "lr": trunk_lr}, {"params": rest, "lr": args.lr}]
    return torch.optim.AdamW(groups, weight_decay=args.weight_decay)


def model_config(args: argparse.Namespace, num_categories: int, num_attributes: int) -> FashionNetConfig:
    """The FashionNet the flags describe (its whitening is fitted and installed after training)."""
    pretrained = False if args.weights == "none" else (True if args.weights == "imagenet" else args.weights)
    return FashionNetConfig(backbone=args.backbone, pretrained=pretrained, embedding_dim=args.embedding_dim,
                            num_categories=num_categories, num_attributes=num_attributes, image_size=args.image_size,
                            landmark_head=args.landmark_head, appearance_weight=args.appearance_weight,
                            colour_window=args.colour_window, detail_window=args.detail_window)


def warmup_cosine(total_steps: int, warmup: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


@dataclass
class TrainingData:
    """The frames and datasets of one training run."""

    root: Path
    train_frame: pd.DataFrame
    val_queries: pd.DataFrame
    val_gallery: pd.DataFrame
    train_set: DeepFashionDataset
    val_query_set: DeepFashionDataset
    val_gallery_set: DeepFashionDataset
    categories: list[str]
    attribute_names: list[str]
    label_maps: dict


def training_transform(args: argparse.Namespace):
    """The training pipeline the flags ask for: zoom, rotation and shift, then the photographic style."""
    jitter = AffineJitter(degrees=args.affine_degrees, translate=args.affine_translate, scale=tuple(args.affine_scale))
    base = build_transforms(train=True, size=args.image_size, crop_to_bbox=args.crop_to_bbox, jitter=jitter)
    return StyledTransform(base, StyleAugment(args.style_augment)) if args.style_augment > 0 else base


def load_training_data(args: argparse.Namespace) -> TrainingData:
    """Read the layouts, split off validation, and build the datasets and label maps."""
    frame, data_root, attribute_names = read_training_frames(args.data_root, None if args.benchmark == "auto" else args.benchmark)
    train_frame, val_queries, val_gallery = split_for_training(frame, args.val_fraction, args.seed)
    if args.val_max_queries and len(val_queries) > args.val_max_queries:
        val_queries = val_queries.sample(n=args.val_max_queries, random_state=args.seed)
    categories = sorted(c for c in frame["category"].dropna().unique())
    category_labels = make_label_map(categories)
    train_set = DeepFashionDataset(train_frame, data_root, training_transform(args),
                                   item_labels=make_label_map(train_frame["item_id"]), category_labels=category_labels)
    eval_tf = build_transforms(train=False, size=args.image_size)
    typed = frame.dropna(subset=["category", "clothes_type"])
    category_clothes_types = {str(c): int(t.mode().iloc[0]) for c, t in typed.groupby("category")["clothes_type"]}
    return TrainingData(
        data_root, train_frame, val_queries, val_gallery, train_set,
        DeepFashionDataset(val_queries, data_root, eval_tf, category_labels=category_labels, on_error="skip"),
        DeepFashionDataset(val_gallery, data_root, eval_tf, category_labels=category_labels, on_error="skip"),
        categories, attribute_names,
        {"categories": categories, "attributes": attribute_names, "category_clothes_types": category_clothes_types},
    )


# Training options removed because they did no better (docs/experiments/tried_and_removed.md), each at its "off" value.
RETIRED_OPTIONS = {"distill_weight": 0.0, "proxy_weight": 0.0, "xbm_size": 0, "sampler": "pk"}


def resume_from(path: str, model, optimizer, scheduler, config: FashionNetConfig) -> tuple[int, list]:
    """Load a checkpoint's model, optimizer and scheduler; returns (first epoch to run, history)."""
    ckpt = load_checkpoint(path)
    trained = ckpt.get("args", {})
    retired = [f"{name}={trained[name]!r}" for name, off in RETIRED_OPTIONS.items() if trained.get(name, off) != off]
    if retired:
        raise SystemExit(f"--resume {path}: that run trained with {', '.join(retired)}, which this version no longer has; start a new run")
    saved, state = without_retired_settings(ckpt, path)
    # the whitening is fitted after the last epoch, so a finished run's checkpoint has one its flags do not build
    saved_config = {**saved, "whiten_dim": config.whiten_dim, "whiten_by_part": config.whiten_by_part}
    if saved_config != config.to_dict():
        raise SystemExit(f"--resume {path}: the checkpoint's model config differs from these flags:\n"
                         f"  checkpoint: {saved}\n  flags:      {config.to_dict()}")
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith(WHITENING_BUFFERS)})
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    return int(ckpt["epoch"]) + 1, list(json.loads(ckpt.get("history_json", "[]")))


def main(argv: Optional[list[str]] = None) -> dict[str, Any] | int:
    """Train; returns {"history", "checkpoint"}. Without ``argv`` it is the ``fashionnet-train``
    command (``sys.exit(main())``): the exit status, a refused input as one line (fashionnet.cli_errors)."""
    if argv is None:
        return run_main(lambda: main(sys.argv[1:]))
    args = parse_args(argv)
    args.rank, args.world_size, local_rank = init_distributed()
    is_main = args.rank == 0
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cuda" and args.world_size > 1:
        device = torch.device("cuda", local_rank)
    seed_everything(args.seed)
    if args.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    amp_dtype = None
    if args.amp == "on" or (args.amp == "auto" and device.type == "cuda"):
        amp_dtype = torch.bfloat16 if device.type != "cuda" or torch.cuda.is_bf16_supported() else torch.float16

    data = load_training_data(args)
    args.eval_batch_size = 2 * args.items_per_batch * args.images_per_item
    if is_main:
        print(f"data: {', '.join(map(str, args.data_root))} | train {len(data.train_frame)} images of {len(data.train_set.item_labels)} items | "
              f"val {len(data.val_queries)} queries, {len(data.val_gallery)} gallery | {len(data.categories)} categories, "
              f"{len(data.attribute_names)} attributes", flush=True)

    config = model_config(args, len(data.categories), len(data.attribute_names))
    model = create_model(config).to(device)
    if args.workers < 0:
        args.workers = 4 if device.type == "cuda" else 0
    attribute_loss = (AttributeLoss.from_labels(attribute_matrix(data.train_frame, len(data.attribute_names)))
                      if data.attribute_names else AttributeLoss())
    schedule = IterativeSchedule(args.rounds, args.landmark_epochs, args.joint_epochs, args.gt_pooling_epochs,
                                 StageWeights(*args.landmark_stage_weights), StageWeights(*args.joint_stage_weights))
    batches = args.batches_per_epoch or max(1, len(data.train_frame) // (args.items_per_batch * args.images_per_item * args.world_size))
    sampler = build_sampler(data.train_set, args, batches)
    args.frozen_layers = frozen_trunk_layers(model, args.freeze_trunk_layers)
    optimizer = build_optimizer(model, args)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(batches * schedule.total_epochs, args.warmup_steps))
    preprocessing = {"image_size": args.image_size, "letterbox": True, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.output_dir / "checkpoint.pt"
    start_epoch, history = 0, []
    resume = str(ckpt_path) if args.resume == "auto" and ckpt_path.exists() else ("" if args.resume == "auto" else args.resume)
    if resume:
        start_epoch, history = resume_from(resume, model, optimizer, scheduler, config)
        if is_main:
            print(f"resumed from {resume} at epoch {start_epoch + 1}", flush=True)

    train_model = model
    if args.world_size > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                                                find_unused_parameters=True)
    run = TrainingRun(train_model, FashionNetLosses(attribute_loss, args.margin, args.miner).to(device), optimizer, scheduler, schedule,
                      LandmarkCollapseGuard(args.collapse_min_spread, args.collapse_patience),
                      torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16), amp_dtype, device, args.frozen_layers,
                      args.grad_clip, show_progress=not args.no_progress and is_main)
    if is_main:
        run.log = TrainingLog(args.output_dir, args.log_every, start_epoch, args.tensorboard, args.world_size)
    started = time.time()
    for epoch in range(start_epoch, schedule.total_epochs):
        # Every epoch's randomness derives from (seed, epoch), so a resumed run replays it exactly.
        seed_everything(args.seed * 1000 + epoch)
        sampler.set_epoch(epoch)
        loader = DataLoader(data.train_set, batch_sampler=sampler, num_workers=args.workers, collate_fn=collate_skip_none,
                            worker_init_fn=seed_worker, generator=torch.Generator().manual_seed(args.seed * 1000 + epoch),
                            persistent_workers=False, pin_memory=device.type == "cuda")
        t0 = time.time()
        train_stats = train_one_epoch(run, loader, epoch)
        record = {"epoch": epoch + 1, "stage": schedule.stage(epoch), "train": train_stats,
                  "train_images_per_s": batches * args.items_per_batch * args.images_per_item * args.world_size / max(time.time() - t0, 1e-9)}
        if is_main:
            if len(data.val_queries) and len(data.val_gallery):
                record["val"] = v = evaluate(model, data.val_query_set, data.val_gallery_set, device, args)
                print(f"epoch {epoch + 1}: " + " ".join(f"top{k} {r:.3f}" for k, r in v["top_k"].items())
                      + f" | mAP@R {v['map_at_r']:.3f} | NE {v['ne']:.4f} | train {record['train_images_per_s']:.1f} img/s", flush=True)
            history.append(record)
            run.log.epoch(record, history)  # before the checkpoint: a resumed run drops rows of epochs it repeats
            save_checkpoint(ckpt_path, model_state=model.state_dict(), model_config=config.to_dict(), label_maps=data.label_maps,
                            preprocessing=preprocessing, epoch=epoch, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                            args=_plain_args(args), history_json=json.dumps(history), package_version=__version__)
        if args.world_size > 1:
            dist.barrier()
        if args.time_limit_minutes and (time.time() - started) / 60 > args.time_limit_minutes and epoch + 1 < schedule.total_epochs:
            if is_main:
                print(f"time limit of {args.time_limit_minutes} min reached after epoch {epoch + 1}; resume with --resume auto", flush=True)
            break
    if is_main:
        run.log.write_history(history)
        run.log.close()
        if history:
            store_calibration(ckpt_path, model, data, device, args, training_transform(args))
    if args.world_size > 1:
        dist.destroy_process_group()
    return {"history": history, "checkpoint": str(ckpt_path)}


def _plain_args(args: argparse.Namespace) -> dict[str, Any]:
    """argparse values as plain types, so the checkpoint loads with weights_only=True."""
    out = {}
    for k, v in vars(args).items():
        if k == "frozen_layers":
            continue
        if isinstance(v, (list, tuple)):
            v = [str(x) if isinstance(x, Path) else x for x in v]
        out[k] = str(v) if isinstance(v, Path) else v
    return out


if __name__ == "__main__":
    sys.exit(main())
