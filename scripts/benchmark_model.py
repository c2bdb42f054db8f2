#!/usr/bin/env python
"""Speed of FashionNet against its bare backbone (trunk + conv5 + GAP), measured in one run.

Prints embedding images/s of both (torch.inference_mode, after warm-up; the two are timed
alternately batch by batch so background load hits both alike), FashionNet's overhead over the bare
backbone (goal: at most 15%), and training images/s (forward + all losses + backward + SGD step).

    python scripts/benchmark_model.py --backbone efficientnet_lite0 --image-size 224 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fashionnet.cli.errors import run_main  # noqa: E402
from fashionnet.cli.options import device_option  # noqa: E402
from fashionnet.device import resolve_device  # noqa: E402
from fashionnet.models import BareBackbone, FashionNetConfig, create_model, get_backbone, list_backbones  # noqa: E402
from fashionnet.training.losses import AttributeLoss, CategoryLoss, LandmarkL2Loss, TripletLoss, VisibilityLoss  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="efficientnet_lite0", choices=list_backbones(), help="trunk to time")
    p.add_argument("--image-size", type=int, default=224, help="side of the square input images, in pixels")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--batches", type=int, default=20, help="timed inference batches per model")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    p.add_argument("--train-batches", type=int, default=5, help="timed training steps (0 to skip)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    device_option(p)
    p.add_argument("--pretrained", action="store_true", help="load pretrained weights (speed does not depend on them)")
    p.add_argument("--landmark-conv5-units", type=int, default=None, help="override the landmark branch depth")
    p.add_argument("--pool-mode", default="max", choices=["max", "align"], help="landmark pooling: max pooling or RoIAlign")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast for every forward (as training does on CUDA)")
    p.add_argument("--num-categories", type=int, default=50, help="width of the category head")
    p.add_argument("--num-attributes", type=int, default=1000, help="width of the attribute head")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return get_args_parser().parse_args(argv)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def synthetic_targets(batch: int, num_categories: int, num_attributes: int, device: torch.device) -> dict:
    """Random labels shaped like a dataset batch; items in groups of 4 so triplets exist."""
    g = torch.Generator().manual_seed(0)
    return {
        "landmarks": torch.rand(batch, 8, 2, generator=g).to(device),
        "visibility": torch.randint(0, 4, (batch, 8), generator=g).to(device),
        "category": torch.randint(-1, max(num_categories, 1), (batch,), generator=g).to(device),
        "attributes": torch.randint(-1, 2, (batch, num_attributes), generator=g).to(device),
        "item": (torch.arange(batch) // 4).to(device),
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)

    config = FashionNetConfig(
        backbone=args.backbone,
        pretrained=args.pretrained,
        image_size=args.image_size,
        num_categories=args.num_categories,
        num_attributes=args.num_attributes,
        landmark_conv5_units=args.landmark_conv5_units,
        pool_mode=args.pool_mode,
    )
    model = create_model(config).to(device).eval()
    bare = BareBackbone(get_backbone(args.backbone, pretrained=args.pretrained)).to(device).eval()
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)

    bare_times, model_times = [], []
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp)  # noqa: E731
    with torch.inference_mode(), autocast():
        for _ in tqdm(range(args.warmup), desc="warm-up", leave=False):
            bare(images)
            model(images)
        for _ in tqdm(range(args.batches), desc="inference", leave=False):
            bare_times.append(time_call(lambda: bare(images), device))
            model_times.append(time_call(lambda: model(images)["embedding"], device))

    bare_ips = args.batch_size / statistics.median(bare_times)
    model_ips = args.batch_size / statistics.median(model_times)
    overhead = statistics.median(model_times) / statistics.median(bare_times) - 1.0
    params = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731

    print(f"device={device} threads={torch.get_num_threads()} backbone={args.backbone} image={args.image_size} batch={args.batch_size} torch={torch.__version__} amp={'bf16' if args.amp else 'off'}")
    print(f"landmark branch conv5 units: {len(model.landmark_branch.conv5)} of {len(model.global_conv5)}; pool_mode={args.pool_mode}")
    print(f"bare backbone (trunk+conv5+GAP): {bare_ips:8.1f} img/s  median {statistics.median(bare_times) * 1e3:7.1f} ms/batch  {params(bare):.2f} M params")
    print(f"FashionNet embedding           : {model_ips:8.1f} img/s  median {statistics.median(model_times) * 1e3:7.1f} ms/batch  {params(model):.2f} M params")
    print(f"FashionNet overhead over bare  : {overhead * 100:+.1f}%  (goal <= +15%)")

    if args.train_batches > 0:
        model.train()
        t = synthetic_targets(args.batch_size, args.num_categories, args.num_attributes, device)
        losses = {
            "landmark": LandmarkL2Loss(),
            "visibility": VisibilityLoss(),
            "category": CategoryLoss(),
            "attribute": AttributeLoss.from_labels(t["attributes"].cpu().numpy()).to(device),
            "triplet": TripletLoss(margin=0.2),
        }
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step():
            with autocast():
                out = model(images)
            loss = (
                losses["landmark"](out["landmarks"], t["landmarks"], t["visibility"])
                + losses["visibility"](out["visibility_logits"], t["visibility"])
                + losses["category"](out["category_logits"], t["category"])
                + losses["attribute"](out["attribute_logits"], t["attributes"])
                + losses["triplet"](out["embedding"], t["item"])
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        step()  # warm-up
        train_times = [time_call(step, device) for _ in tqdm(range(args.train_batches), desc="training", leave=False)]
        print(f"FashionNet training (fwd+all losses+bwd+SGD): {args.batch_size / statistics.median(train_times):8.1f} img/s  median {statistics.median(train_times) * 1e3:7.1f} ms/batch")


if __name__ == "__main__":
    sys.exit(run_main(main))
