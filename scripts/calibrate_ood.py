#!/usr/bin/env python
"""Fit a checkpoint's out-of-distribution density (fashionnet.calibration.ood), category temperature
(fashionnet.calibration.temperature) and landmarks' garment-box layout (fashionnet.calibration.landmark_prior), and report how the density flags photos and how calibrated the
category probabilities are on the test photos.

Training stores the density itself; use this for a checkpoint trained without it, after changing
the calibration settings, or to measure the check:

    python scripts/calibrate_ood.py --checkpoint runs/demo/checkpoint.pt \
        --data-root data/synth/consumer2shop data/synth/inshop --report --photos my_everyday_photos/

The report gives the share of photos flagged "unlike the training photos", through the same
Predictor the page and the indexer use: the test-split garment photos (which should almost never
be flagged), generated non-garment images (plain, noise, gradients, patterns) and, with
--photos, folders of your own photos (each folder reported on its own line).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from fashionnet.calibration.landmark_prior import fit_box_layout  # noqa: E402
from fashionnet.calibration.ood import DEFAULT_MARGIN, DEFAULT_QUANTILE, calibrate_on_frames, non_garment_probes  # noqa: E402
from fashionnet.cli.errors import run_main  # noqa: E402
from fashionnet.cli.options import data_root_option, device_option  # noqa: E402
from fashionnet.data.dataset import DeepFashionDataset  # noqa: E402
from fashionnet.data.transforms import build_transforms  # noqa: E402
from fashionnet.device import resolve_device  # noqa: E402
from fashionnet.inference.predictor import Predictor  # noqa: E402
from fashionnet.models.checkpoint import atomic_torch_save, input_side, load_checkpoint, model_from_checkpoint  # noqa: E402
from fashionnet.calibration.temperature import (  # noqa: E402
    dataset_category_logits,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)
from fashionnet.training.data import read_training_frames, split_for_training  # noqa: E402
from indexer.embedding import IMAGE_SUFFIXES  # noqa: E402

TEST_SPLITS = ("test", "query", "gallery")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path, help="trained checkpoint; the calibration is written into it (unless --no-write)")
    data_root_option(p, several=True, required=True, help="the layouts the checkpoint was trained on")
    p.add_argument("--max-images", type=int, default=1200, help="training photos drawn for the fit (a quarter of them held out)")
    p.add_argument("--quantile", type=float, default=DEFAULT_QUANTILE, help="quantile of the held-out training photos' scores the threshold is set at")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="factor on that quantile's score (the threshold is quantile x margin)")
    p.add_argument("--no-write", action="store_true", help="measure only; leave the checkpoint as it is")
    p.add_argument("--report", action="store_true", help="report flag rates on test photos and non-garment images")
    p.add_argument("--photos", nargs="*", type=Path, default=[], help="folders of extra photos to report on")
    p.add_argument("--max-test-photos", type=int, default=600, help="test photos reported on with --report")
    device_option(p)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def flagged(predictor: Predictor, images: list, batch_size: int) -> tuple[int, np.ndarray]:
    scores = []
    for start in range(0, len(images), batch_size):
        scores += [p.unfamiliarity for p in predictor.predict_batch(images[start:start + batch_size])]
    scores = np.array(scores)
    return int((scores > predictor.density.threshold).sum()), scores


def fit_category_temperature(model, ckpt, data_root, side, device, held_frames, frame, args):
    """Fit the category temperature on the validation photos; report calibration on the test photos."""
    categories = list(ckpt["label_maps"].get("categories", []))
    if not categories:
        return None
    labels_of = {c: i for i, c in enumerate(categories)}
    transform = build_transforms(train=False, size=side)

    def logits_of(frames):
        sets = [DeepFashionDataset(f, data_root, transform, category_labels=labels_of, on_error="skip") for f in frames if len(f)]
        return dataset_category_logits(model, sets, device, args.batch_size)

    logits, labels = logits_of(held_frames)
    try:
        temperature = fit_temperature(logits, labels)
    except ValueError as exc:
        print(f"no category temperature: {exc}")
        return None
    test = frame[frame["split"].isin(TEST_SPLITS)]
    test_logits, test_labels = logits_of([test.sample(n=min(len(test), args.max_test_photos), random_state=0)])
    known = test_labels >= 0
    for name, t in (("before (T = 1)", 1.0), (f"after (T = {temperature:.3f})", temperature)):
        probs = torch.softmax(torch.as_tensor(test_logits[known]) / t, dim=1).numpy()
        print(f"category calibration on {int(known.sum())} test photos {name}: expected calibration error "
              f"{expected_calibration_error(probs, test_labels[known]):.3f}, NLL {negative_log_likelihood(test_logits[known], test_labels[known], t):.3f}, "
              f"mean confidence {probs.max(axis=1).mean():.3f}, accuracy {(probs.argmax(axis=1) == test_labels[known]).mean():.3f}")
    return temperature


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    ckpt = load_checkpoint(args.checkpoint)
    model, config = model_from_checkpoint(ckpt, args.checkpoint)
    model = model.to(device).eval()
    trained_with = ckpt.get("args") or {}
    frame, data_root, _ = read_training_frames(args.data_root)
    train, val_queries, val_gallery = split_for_training(frame, float(trained_with.get("val_fraction", 0.1)), int(trained_with.get("seed", 0)))
    side = input_side(ckpt["preprocessing"], config)
    started = time.time()
    density = calibrate_on_frames(model, train, pd.concat([val_queries, val_gallery]), data_root, side, device,
                                  max_images=args.max_images, batch_size=args.batch_size, progress=not args.no_progress,
                                  seed=int(trained_with.get("seed", 0)), quantile=args.quantile, margin=args.margin)
    print(f"density: {density.dim} features, fitted on {density.fitted_on} training photos (shrinkage {density.shrinkage:.3f}), "
          f"threshold {density.threshold:.3f} set on {density.calibrated_on} held-out photos, {time.time() - started:.0f} s")
    temperature = fit_category_temperature(model, ckpt, data_root, side, device, [val_queries, val_gallery], frame, args)
    prior, note = fit_box_layout(train)
    print(f"landmark box layout: {note}")
    if not args.no_write:
        ckpt["ood"] = density.to_state()
        if prior is not None:
            ckpt["landmark_prior"] = prior.to_state()
        if temperature is not None:
            ckpt["category_temperature"] = temperature
        atomic_torch_save(ckpt, args.checkpoint)
        print(f"stored in {args.checkpoint}")
    if not args.report:
        return

    predictor = Predictor(model, config, ckpt["label_maps"], ckpt["preprocessing"], ckpt["model_checksum"], device=device, density=density)
    test = frame[frame["split"].isin(TEST_SPLITS)]
    if len(test) > args.max_test_photos:
        test = test.sample(n=args.max_test_photos, random_state=0)
    rows = []
    for source, part in test.groupby("source", dropna=False):
        paths = [str(data_root / p) for p in part["image_path"]]
        n, scores = flagged(predictor, paths, args.batch_size)
        rows.append((f"test-split garment photos ({source})", n, len(paths), scores))
    for kind, images in non_garment_probes(n_per_kind=25, seed=1).items():
        n, scores = flagged(predictor, images, args.batch_size)
        rows.append((f"non-garment: {kind}", n, len(images), scores))
    for folder in args.photos:
        paths = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        n, scores = flagged(predictor, paths, args.batch_size)
        rows.append((f"photos in {folder}", n, len(paths), scores))
    print("\n| photos | flagged | share | median score |\n|---|---:|---:|---:|")
    for name, n, total, scores in rows:
        print(f"| {name} | {n} / {total} | {n / max(total, 1):.1%} | {np.median(scores) if total else float('nan'):.2f} |")
    garments = [r for r in rows if r[0].startswith("test-split")]
    others = [r for r in rows if not r[0].startswith("test-split")]
    g_n, g_t = sum(r[1] for r in garments), sum(r[2] for r in garments)
    o_n, o_t = sum(r[1] for r in others), sum(r[2] for r in others)
    print(f"\ngarment photos flagged: {g_n}/{g_t} ({g_n / max(g_t, 1):.1%}); non-garment images flagged: {o_n}/{o_t} ({o_n / max(o_t, 1):.1%})")


if __name__ == "__main__":
    sys.exit(run_main(main))
