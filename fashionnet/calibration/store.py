"""Fit at the end of training what the checkpoint stores beside the weights: the learned whitening
of the search embedding (``whitening``), the out-of-distribution density (``ood``), the landmarks'
garment-box layout (``landmark_prior``) and the category temperature (``temperature``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fashionnet.calibration.landmark_prior import fit_box_layout
from fashionnet.calibration.ood import calibrate_on_frames
from fashionnet.calibration.temperature import dataset_category_logits, fit_temperature
from fashionnet.calibration.whitening import whiten_model
from fashionnet.models.checkpoint import atomic_torch_save, load_checkpoint, replace_model


def store_calibration(ckpt_path: Path, model, data, device, args, augment) -> None:
    """Fit what is stored beside the trained weights and add it to the checkpoint: the learned whitening
    (``args.whiten_dim``; it changes the weights, so it comes first), the out-of-distribution density,
    the landmarks' garment-box layout and the category temperature."""
    ckpt = load_checkpoint(ckpt_path)
    if args.whiten_dim:
        store_whitening(ckpt, model, data, device, args, augment)
    if args.ood_images:
        try:
            density = calibrate_on_frames(model, data.train_frame, pd.concat([data.val_queries, data.val_gallery]), data.root,
                                          args.image_size, device, max_images=args.ood_images, batch_size=args.eval_batch_size,
                                          workers=args.workers, progress=not args.no_progress, seed=args.seed)
            ckpt["ood"] = density.to_state()
            print(f"out-of-distribution density: fitted on {density.fitted_on} photos, threshold {density.threshold:.3f} "
                  f"(set on {density.calibrated_on} held-out photos)", flush=True)
        except ValueError as exc:  # e.g. too few photos
            print(f"no out-of-distribution density stored: {exc}", flush=True)
    prior, note = fit_box_layout(data.train_frame)
    print(f"landmark box layout: {note}", flush=True)
    if prior is not None:
        ckpt["landmark_prior"] = prior.to_state()
    if data.categories:
        logits, labels = dataset_category_logits(model, [data.val_query_set, data.val_gallery_set], device, args.eval_batch_size)
        try:
            ckpt["category_temperature"] = temperature = fit_temperature(logits, labels)
            print(f"category temperature {temperature:.3f} (fitted on {int((labels >= 0).sum())} validation photos)", flush=True)
        except ValueError as exc:
            print(f"no category temperature stored: {exc}", flush=True)
    atomic_torch_save(ckpt, ckpt_path)


def store_whitening(ckpt: dict, model, data, device, args, augment) -> None:
    """Fit the learned whitening on the training photos (each once as it is and ``args.whiten_augmented_views``
    times through ``augment``), install it in ``model`` and ``ckpt`` (weights, config and checksum)."""
    try:
        line = whiten_model(model, data.train_frame, data.root, args.image_size, device, args.whiten_dim, args.whiten_shrinkage,
                            augment=augment, augmented_views=args.whiten_augmented_views, seed=args.seed,
                            batch_size=args.eval_batch_size, workers=args.workers, progress=not args.no_progress,
                            by_part=args.whiten_by_part)
    except ValueError as exc:
        print(f"no whitening stored: {exc}", flush=True)
        return
    replace_model(ckpt, model)
    print(line, flush=True)
