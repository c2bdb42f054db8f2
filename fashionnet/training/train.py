"""Train FashionNet on an In-shop or Consumer-to-shop layout (synthetic or real).

Laid out like torchvision's references/classification/train.py: ``get_args_parser``
(:mod:`fashionnet.training.args`), ``train_one_epoch`` and ``evaluate`` (:mod:`fashionnet.training.loop`)
and ``main``. ``scripts/train_fashionnet.py`` and the ``fashionnet-train`` command both call :func:`main`.

    python scripts/train_fashionnet.py --data-root data/synth/consumer2shop --output-dir runs/demo
    python scripts/train_fashionnet.py --data-root data/synth/consumer2shop data/synth/inshop ...  # both layouts
    torchrun --nproc_per_node 2 scripts/train_fashionnet.py ...   # DDP (gloo on CPU, nccl on CUDA)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from fashionnet import __version__
from fashionnet.calibration.close_match import store_match_reference
from fashionnet.calibration.store import store_calibration
from fashionnet.calibration.whitening import WHITENING_BUFFERS
from fashionnet.cli.errors import run_main
from fashionnet.data.dataset import collate_skip_none
from fashionnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from fashionnet.device import resolve_device
from fashionnet.inference.predictor import Predictor
from fashionnet.models.checkpoint import load_checkpoint, save_checkpoint, without_retired_settings
from fashionnet.models.config import FashionNetConfig
from fashionnet.models.fashionnet import create_model
from fashionnet.training.args import parse_args
from fashionnet.training.data import attribute_matrix, build_sampler, load_training_data, training_transform
from fashionnet.training.distributed import init_distributed, seed_everything, seed_worker
from fashionnet.training.log import TrainingLog
from fashionnet.training.loop import TrainingRun, evaluate, train_one_epoch
from fashionnet.training.losses import AttributeLoss, FashionNetLosses
from fashionnet.training.schedule import IterativeSchedule, LandmarkCollapseGuard, StageWeights


def frozen_trunk_layers(model, n: int) -> list[torch.nn.Module]:
    """The first ``n`` layers of the trunk, with gradients switched off."""
    layers = list(model.trunk.children())[:n]
    for layer in layers:
        layer.requires_grad_(False)
    return layers


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
    command (``sys.exit(main())``): the exit status, a refused input as one line (fashionnet.cli.errors)."""
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
            # after the whitening: the reference holds search embeddings, made as queries are
            store_match_reference(ckpt_path, Predictor.from_checkpoint(ckpt_path, device=device, runtime="torch"),
                                  data.val_queries, data.val_gallery, data.root, args.eval_batch_size)
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
