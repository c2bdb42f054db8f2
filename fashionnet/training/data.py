"""The data of a training run: the layouts read into one frame, validation split off, the datasets,
the training augmentation and the P x K batches."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from fashionnet.data.dataset import DeepFashionDataset, make_label_map
from fashionnet.data.readers import read_attribute_names, read_benchmark
from fashionnet.data.samplers import PKSampler
from fashionnet.data.style_augment import StyleAugment, StyledTransform
from fashionnet.data.transforms import AffineJitter, build_transforms
from fashionnet.evaluation.protocols import protocol_frames


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


def build_sampler(train_set: DeepFashionDataset, args, batches: int) -> PKSampler:
    """P x K batches of random items, this rank's share of them."""
    return PKSampler(train_set.item_per_row, p=args.items_per_batch, k=args.images_per_item, seed=args.seed,
                     num_batches=batches * args.world_size, rank=args.rank, world_size=args.world_size)
