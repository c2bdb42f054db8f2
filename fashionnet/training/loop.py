"""One epoch of training and the validation after it: the steps, their loss weights, the collapse guard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from tqdm.auto import tqdm

from fashionnet.data.dataset import DeepFashionDataset
from fashionnet.data.schema import landmarks_of
from fashionnet.evaluation.landmark_metrics import normalized_error
from fashionnet.evaluation.outputs import embed_dataset, landmarks_to_original_pixels, predicted_landmark_outputs
from fashionnet.evaluation.retrieval_metrics import retrieval_metrics
from fashionnet.training.log import TrainingLog
from fashionnet.training.losses import FashionNetLosses
from fashionnet.training.schedule import LOSS_TERMS, IterativeSchedule, LandmarkCollapseGuard


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


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
