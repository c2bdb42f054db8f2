"""The DeepFashion retrieval protocols, with the baselines and ablations measured in one run.

In-shop: query images against gallery images. Consumer-to-shop: consumer images of the test items
against all shop images of the test items. A hit at k is any gallery image of the query's item among
its k nearest (the paper's rule). Variants, all on the same images:

    (a) imagenet  - the backbone's ImageNet weights, global average pooling, no training
    (b) global    - trained FashionNet, global branch only
    (c) fashionnet - trained FashionNet, pooling at its predicted landmarks (what the product does)
    (d) gt_landmarks - trained FashionNet pooling at ground-truth landmarks (an upper bound)

On the query photos it also checks what the page shows against the annotations
(:func:`real_photo_measures`): the garment box, the clothes type, the landmarks marked sure and
unsure, and what the mean layout placed in the predicted or the annotated box scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from fashionnet.data.dataset import DeepFashionDataset
from fashionnet.data.readers import detect_benchmark, read_benchmark
from fashionnet.data.schema import bboxes_of, landmarks_of
from fashionnet.data.transforms import build_transforms
from fashionnet.device import resolve_device
from fashionnet.evaluation.box_metrics import garment_box_iou
from fashionnet.evaluation.label_metrics import attribute_recall_at_k, category_accuracy
from fashionnet.evaluation.landmark_metrics import mean_layout, mean_layout_in_box, normalized_error, normalized_error_by_confidence, pdl
from fashionnet.evaluation.outputs import embed_dataset, fashionnet_outputs, localised_outputs, mirrored_outputs
from fashionnet.evaluation.protocols import protocol_frames
from fashionnet.evaluation.retrieval_metrics import map_at_r, retrieval_metrics, topk_hit_rate
from fashionnet.inference.prediction import LOW_CONFIDENCE
from fashionnet.inference.predictor import Predictor
from fashionnet.inference.retrieval_time import average_views, best_view_ranking, item_centroids
from fashionnet.landmarks import CLOTHES_TYPE_NAMES
from fashionnet.models.backbones import BareBackbone, get_backbone
from fashionnet.models.checkpoint import input_side, load_checkpoint, model_from_checkpoint

KS = (1, 5, 10, 20, 30, 40, 50)
VARIANTS = ("imagenet", "global", "fashionnet", "gt_landmarks")
VARIANT_LABELS = {
    "imagenet": "(a) ImageNet backbone, GAP, untrained",
    "global": "(b) FashionNet global branch only",
    "fashionnet": "(c) FashionNet, predicted landmarks",
    "gt_landmarks": "(d) FashionNet, ground-truth landmarks (upper bound)",
}


def measure_retrieval_time(q_pred, g_pred, q_items, g_items, ks, q_flip, g_flip) -> dict[str, Any]:
    """Top-k and mAP@R of variant (c) with flip averaging and item aggregation.
    ``q_pred`` / ``g_pred`` hold the plain embeddings (``embedding_plain``), ``q_flip`` / ``g_flip``
    the mirror images' (:func:`mirrored_outputs`)."""
    qi, gi = q_items[q_pred["index"]], g_items[g_pred["index"]]
    g_flipped = average_views(g_pred["embedding_plain"], g_flip["embedding"])
    views = {"plain": (q_pred["embedding_plain"], g_pred["embedding_plain"]),
             "flip": (average_views(q_pred["embedding_plain"], q_flip["embedding"]), g_flipped),
             # the gallery flip-averaged, the query one view: the query costs one pass
             "flip_gallery": (q_pred["embedding_plain"], g_flipped)}

    def scored(q, g, items=gi, depth_ks=ks):
        r = retrieval_metrics(q, qi, g, items, ks=depth_ks, show_progress=False)
        return {"top_k": {int(k): float(v) for k, v in r["top_k"].items()}, "map_at_r": float(r["map_at_r"])}

    out = {}
    for name, (q, g) in views.items():
        out[name] = scored(q, g)
        ids, centroids = item_centroids(g, gi)
        item_ks = tuple(k for k in ks if k <= len(ids))
        out[f"{name}+items"] = scored(q, centroids, ids, item_ks)
        ids, ranked = best_view_ranking(q, g, gi, max(item_ks))
        # one relevant item per query: mAP@R is precision at 1 of the queries whose item is there
        present = np.isin(qi, ids)
        out[f"{name}+best_view"] = {"top_k": {int(k): float(v) for k, v in topk_hit_rate(ranked, qi, item_ks, gallery_item_ids=ids).items()},
                                    "map_at_r": float(map_at_r(ranked[present], qi[present], ids, num_relevant=np.ones(present.sum(), dtype=np.int64)))}
    return out


def real_photo_measures(rows, pred: dict[str, np.ndarray], clothes_types_known: bool = True) -> dict[str, Any]:
    """What the page shows of a photo, checked against its annotations (``rows``, one per row of
    ``pred``, the :func:`localised_outputs` of those photos):

    - "garment_box": IoU of the predicted garment box with the annotated one (:func:`garment_box_iou`);
    - "clothes_type": share of photos whose predicted clothes type (that of the predicted category)
      is the annotated one, overall and per type; left out when ``clothes_types_known`` is False
      (a checkpoint without the category -> clothes type map);
    - "landmarks_by_confidence": NE of the points the page marks sure and unsure (the Predictor's
      rule, ``Landmark.low_confidence``), and the share of visible points marked sure;
    - "mean_layout_in_box": NE of each clothes type's mean layout within the box (fitted on these
      photos' annotated boxes) placed in the predicted box and in the annotated one, next to the
      model's own NE, on the photos that have both boxes: what a box alone is worth for landmarks.
    """
    true_xy, vis = landmarks_of(rows)
    sizes = pred["original_size"]
    annotated_box = bboxes_of(rows).astype(np.float64)
    predicted_box = pred["garment_box"].astype(np.float64)
    types = rows["clothes_type"].fillna(-1).to_numpy(np.int64)
    out: dict[str, Any] = {"garment_box": garment_box_iou(predicted_box, annotated_box)}
    known = types >= 0
    if clothes_types_known and known.any():
        right = pred["clothes_type"] == types
        out["clothes_type"] = {"accuracy": float(right[known].mean()), "num_photos": int(known.sum()),
                               "accuracy_per_type": {CLOTHES_TYPE_NAMES.get(int(t), str(t)): float(right[types == t].mean())
                                                     for t in np.unique(types[known])}}
    if "landmark_confidence" in pred:
        sure = ~(pred["landmark_confidence"] < LOW_CONFIDENCE)  # Landmark.low_confidence, negated
        out["landmarks_by_confidence"] = normalized_error_by_confidence(pred["landmarks_px"], true_xy, vis, sizes, sure)
    both = np.isfinite(annotated_box).all(axis=1) & np.isfinite(predicted_box).all(axis=1)
    if both.any():
        def ne(xy):
            return normalized_error(xy[both], true_xy[both], vis[both], sizes[both])["average"]
        out["mean_layout_in_box"] = {
            "ne_predicted_box": ne(mean_layout_in_box(true_xy, vis, annotated_box, types, place_in=predicted_box)),
            "ne_annotated_box": ne(mean_layout_in_box(true_xy, vis, annotated_box, types)),
            "ne_model": ne(pred["landmarks_px"]), "num_photos": int(both.sum())}
    return out


def all_photo_measures(q_rows, q_pred: dict, g_rows, g_pred: dict, clothes_types_known: bool = True) -> dict[str, Any]:
    """:func:`real_photo_measures` over the queries and the gallery together, their landmark NE and
    its floor, and the all-vs-all top-1: each photo searches all the others, a hit when the nearest
    shows the same item. A small real set has few queries; this uses every photo."""
    keys = [k for k in ("landmarks_px", "garment_box", "clothes_type", "original_size", "landmark_confidence") if k in q_pred]
    pred = {k: np.concatenate([np.asarray(q_pred[k]), np.asarray(g_pred[k])]) for k in keys}
    rows = pd.concat([q_rows, g_rows])
    out = real_photo_measures(rows, pred, clothes_types_known)
    true_xy, vis = landmarks_of(rows)
    sizes = pred["original_size"]
    out["ne"] = normalized_error(pred["landmarks_px"], true_xy, vis, sizes)["average"]
    out["mean_layout_ne"] = normalized_error(mean_layout(true_xy, vis, sizes, rows["clothes_type"].fillna(-1).to_numpy()), true_xy, vis, sizes)["average"]
    emb = np.concatenate([np.asarray(q_pred["embedding"]), np.asarray(g_pred["embedding"])]).astype(np.float64)
    items = rows["item_id"].to_numpy()
    scores = emb @ emb.T
    np.fill_diagonal(scores, -np.inf)
    out["all_vs_all_top1"] = float(np.mean(items[scores.argmax(axis=1)] == items))
    out["num_photos"] = int(len(rows))
    return out


def evaluate_checkpoint(checkpoint: str | Path, data_root: str | Path, benchmark: str = "auto", variants: Sequence[str] = VARIANTS,
                        device: str = "auto", batch_size: int = 64, workers: int = 2, baseline_weights: Any = True,
                        max_queries: int = 0, seed: int = 0, progress: bool = True, retrieval_time: bool = False,
                        crop_below: Optional[float] = None, flip_average: bool = True) -> dict[str, Any]:
    """Run the protocol for every variant; returns a JSON-ready dict of figures.

    ``retrieval_time``: also measure variant (c) with each retrieval-time improvement of
    :mod:`fashionnet.inference.retrieval_time` switched on alone and together (results["retrieval_time"]).
    ``crop_below``: the Predictor's crop threshold for (b) and (c) (None: its default; 0: one pass).
    ``flip_average``: (c)'s embedding is averaged with the mirror image's, as the Predictor's is by
    default; False evaluates the plain embedding.
    """
    data_root = Path(data_root)
    benchmark = detect_benchmark(data_root) if benchmark == "auto" else benchmark
    ckpt = load_checkpoint(checkpoint)
    model, config = model_from_checkpoint(ckpt, checkpoint)
    device = resolve_device(device)
    model.to(device).eval()
    side = input_side(ckpt["preprocessing"], config)
    categories = list(ckpt["label_maps"].get("categories", []))
    attributes = list(ckpt["label_maps"].get("attributes", []))

    frame = read_benchmark(data_root, benchmark)
    queries, gallery = protocol_frames(frame, benchmark)
    if max_queries and len(queries) > max_queries:
        queries = queries.sample(n=max_queries, random_state=seed)
    transform = build_transforms(train=False, size=side)
    category_labels = {c: i for i, c in enumerate(categories)}
    q_set = DeepFashionDataset(queries, data_root, transform, category_labels=category_labels, on_error="skip")
    g_set = DeepFashionDataset(gallery, data_root, transform, category_labels=category_labels, on_error="skip")
    ks = tuple(k for k in KS if k <= len(g_set))
    results: dict[str, Any] = {
        "benchmark": benchmark, "split": data_root.name if data_root.name not in ("inshop", "consumer2shop") else benchmark,
        "data_root": str(data_root), "checkpoint": str(checkpoint), "model_checksum": ckpt["model_checksum"],
        "backbone": config.backbone, "input_side": side, "num_queries": len(q_set), "num_gallery": len(g_set), "variants": {},
    }
    q_items = q_set.frame["item_id"].to_numpy()
    g_items = g_set.frame["item_id"].to_numpy()

    embed = lambda fn, ds, desc: embed_dataset(model, ds, device, batch_size, workers, fn, desc, progress)  # noqa: E731
    need_pred = any(v in variants for v in ("global", "fashionnet"))
    # (b) and (c) go through the Predictor, as the page and the indexer do (crop where the garment is small)
    # flip averaging is done here rather than in the Predictor, so that both embeddings can be reported
    predictor = Predictor.from_loaded(ckpt, checkpoint, model=model, device=device, fold_batch_norms=False, flip_average=False, runtime="torch",
                                      **({} if crop_below is None else {"crop_below": crop_below}))
    q_pred = embed(lambda m, b, d: localised_outputs(predictor, q_set, b), q_set, "queries (predicted landmarks)") if need_pred else None
    g_pred = embed(lambda m, b, d: localised_outputs(predictor, g_set, b), g_set, "gallery (predicted landmarks)") if need_pred else None
    q_flip = g_flip = None
    if q_pred is not None:
        results["cropped_share"] = {"queries": float(q_pred["cropped"].mean()), "gallery": float(g_pred["cropped"].mean()),
                                    "crop_below": predictor.crop_below}
        q_pred["embedding_plain"], g_pred["embedding_plain"] = q_pred["embedding"], g_pred["embedding"]
        if flip_average or retrieval_time:
            mirrored = lambda ds, desc: embed(lambda m, b, d: mirrored_outputs(predictor, ds, b), ds, desc)  # noqa: E731
            q_flip, g_flip = mirrored(q_set, "queries (mirrored)"), mirrored(g_set, "gallery (mirrored)")
            if not (np.array_equal(q_flip["index"], q_pred["index"]) and np.array_equal(g_flip["index"], g_pred["index"])):
                raise RuntimeError("the mirrored pass skipped other photos than the first pass")
        if flip_average:
            q_pred["embedding"] = average_views(q_pred["embedding_plain"], q_flip["embedding"])
            g_pred["embedding"] = average_views(g_pred["embedding_plain"], g_flip["embedding"])
    results["flip_average"] = bool(flip_average and q_pred is not None)

    def retrieval(q, g, key):
        r = retrieval_metrics(q[key], q_items[q["index"]], g[key], g_items[g["index"]], ks=ks, show_progress=False)
        return {"top_k": {int(k): float(v) for k, v in r["top_k"].items()}, "map_at_r": float(r["map_at_r"])}

    if "imagenet" in variants:
        bare = BareBackbone(get_backbone(config.backbone, pretrained=baseline_weights)).to(device).eval()
        fn = lambda m, b, d: {"features": torch.nn.functional.normalize(bare(b["image"].to(d)).float(), dim=1)}  # noqa: E731
        results["variants"]["imagenet"] = retrieval(embed(fn, q_set, "queries (ImageNet)"), embed(fn, g_set, "gallery (ImageNet)"), "features")
    if "global" in variants:
        results["variants"]["global"] = retrieval(q_pred, g_pred, "global")
    if "fashionnet" in variants:
        results["variants"]["fashionnet"] = retrieval(q_pred, g_pred, "embedding")
    if retrieval_time and q_pred is not None:
        results["retrieval_time"] = measure_retrieval_time(q_pred, g_pred, q_items, g_items, ks, q_flip, g_flip)
    if "gt_landmarks" in variants:
        fn = lambda m, b, d: fashionnet_outputs(m, b, d, True)  # noqa: E731
        results["variants"]["gt_landmarks"] = retrieval(embed(fn, q_set, "queries (GT landmarks)"), embed(fn, g_set, "gallery (GT landmarks)"), "embedding")

    if q_pred is not None:
        rows = q_set.frame.iloc[q_pred["index"]]
        true_xy, vis = landmarks_of(rows)
        sizes = q_pred["original_size"]
        pred_xy = q_pred["landmarks_px"]
        ne = normalized_error(pred_xy, true_xy, vis, sizes)
        detected = pdl(pred_xy, true_xy, vis, threshold_px=35, image_sizes=sizes, reference_size=512)
        # The floor: answering each clothes type's mean layout (of these very photos) without looking.
        floor = normalized_error(mean_layout(true_xy, vis, sizes, rows["clothes_type"].fillna(-1).to_numpy()), true_xy, vis, sizes)
        heatmap_ne = normalized_error(q_pred["landmarks_px_heatmap"], true_xy, vis, sizes)["average"]
        results["landmarks"] = {"ne": ne["average"], "ne_per_landmark": ne["per_landmark"], "pdl_35px_at_512": detected["average"],
                                "ne_heatmap_only": heatmap_ne,
                                "num_visible": ne["num_visible"], "mean_layout_ne": floor["average"],
                                "mean_layout_ne_per_landmark": floor["per_landmark"], "ne_over_mean_layout": ne["average"] / floor["average"]}
        results["real_photo"] = real_photo_measures(rows, q_pred, clothes_types_known=bool(predictor.category_clothes_types))
        if benchmark == "inshop":  # queries and gallery are the same kind of photo: measure on all of them
            results["all_photos"] = all_photo_measures(rows, q_pred, g_set.frame.iloc[g_pred["index"]], g_pred,
                                                       bool(predictor.category_clothes_types))
        labels = q_set.category_per_row[q_pred["index"]]
        known = labels >= 0
        if len(categories) and known.any():
            acc = category_accuracy(q_pred["category_logits"][known], labels[known], ks=(1, 3))
            results["category_accuracy"] = {f"top{k}": float(v) for k, v in acc.items()}
        # photos without attribute annotations (e.g. real ones) would give a NaN recall
        if len(attributes) and any(q_set.attributes[i] is not None for i in q_pred["index"]):
            attr = np.stack([np.asarray(q_set.attributes[i]) if q_set.attributes[i] is not None else np.zeros(len(attributes))
                             for i in q_pred["index"]])
            results["attribute_recall"] = {f"top{k}": float(attribute_recall_at_k(q_pred["attribute_logits"], attr, k=k)) for k in (3, 5)}
    return results
