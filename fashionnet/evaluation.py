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

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fashionnet.checkpoint import input_side, load_checkpoint, model_from_checkpoint
from fashionnet.data.dataset import DeepFashionDataset, collate_skip_none
from fashionnet.data.readers import detect_benchmark, read_benchmark
from fashionnet.data.schema import bboxes_of, landmarks_of
from fashionnet.data.transforms import build_transforms, letterbox_geometry, to_original_coords
from fashionnet.images import load_image
from fashionnet.inference import LOW_CONFIDENCE, Predictor
from fashionnet.landmarks import CLOTHES_TYPE_NAMES, LANDMARK_NAMES
from fashionnet.localisation import boxes_to_original
from fashionnet.metrics import (attribute_recall_at_k, category_accuracy, garment_box_iou, map_at_r, mean_layout, mean_layout_in_box,
                                normalized_error, normalized_error_by_confidence, pdl, retrieval_metrics, topk_hit_rate)
from fashionnet.models import BareBackbone, get_backbone
from fashionnet.protocols import protocol_frames
from fashionnet.retrieval_time import average_views, best_view_ranking, item_centroids
from fashionnet.runtime import resolve_device

KS = (1, 5, 10, 20, 30, 40, 50)
VARIANTS = ("imagenet", "global", "fashionnet", "gt_landmarks")
VARIANT_LABELS = {
    "imagenet": "(a) ImageNet backbone, GAP, untrained",
    "global": "(b) FashionNet global branch only",
    "fashionnet": "(c) FashionNet, predicted landmarks",
    "gt_landmarks": "(d) FashionNet, ground-truth landmarks (upper bound)",
}


@torch.inference_mode()
def embed_dataset(model, dataset, device, batch_size, workers, fn, desc, progress) -> dict[str, np.ndarray]:
    """Run ``fn(model, batch, device) -> dict of tensors`` over a dataset; returns the concatenated
    arrays plus each row's dataset "index" and "original_size" (width, height; unreadable images skipped)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_skip_none)
    parts: dict[str, list] = {}
    for batch in tqdm(loader, desc=desc, disable=not progress, dynamic_ncols=True, leave=False):
        if batch is None:
            continue
        for key, value in fn(model, batch, device).items():
            parts.setdefault(key, []).append(value.float().cpu() if value.is_floating_point() else value.cpu())
        parts.setdefault("index", []).append(batch["index"])
        parts.setdefault("original_size", []).append(batch["original_size"])
    return {k: torch.cat(v).numpy() for k, v in parts.items()}


def fashionnet_outputs(model, batch, device, ground_truth: bool = False) -> dict[str, torch.Tensor]:
    """Embedding, normalised global feature, landmarks and head logits of a batch; pooling at the
    ground-truth landmarks when ``ground_truth``, else at the predicted ones."""
    images = batch["image"].to(device)
    if ground_truth:
        out = model(images, batch["landmarks"].to(device), batch["visibility"].to(device))
    else:
        out = model(images)
    return {
        "embedding": out["embedding"],
        "global": torch.nn.functional.normalize(out["global_feature"].float(), dim=1),
        "landmarks": out["landmarks"],
        "category_logits": out["category_logits"],
        "attribute_logits": out["attribute_logits"],
    }


def predicted_landmark_outputs(model, batch, device) -> dict[str, torch.Tensor]:
    return fashionnet_outputs(model, batch, device, ground_truth=False)


def _photo_loader(dataset: DeepFashionDataset, batch: dict):
    def photo(i: int) -> Image.Image:
        return load_image(dataset.root / dataset.image_paths[int(batch["index"][i])])
    return photo


def localised_outputs(predictor: Predictor, dataset: DeepFashionDataset, batch: dict) -> dict[str, torch.Tensor]:
    """What the product computes for a batch: the first pass, then a second pass on a crop around
    the garment where it is small (``Predictor.localise``). Landmarks and the garment box come back
    in original pixels."""
    first = predictor.forward_batch(batch["image"])
    geometries = [letterbox_geometry(int(w), int(h), predictor.input_side) for w, h in batch["original_size"].tolist()]
    out, geometries, cropped = predictor.localise(first, geometries, _photo_loader(dataset, batch))
    boxes = boxes_to_original(out, geometries)
    clothes_types = predictor.predicted_clothes_types(predictor.category_probs(out))
    heatmap_only, pixels, _ = predictor.landmark_pixels(out, geometries, boxes, clothes_types)
    extra = {} if "landmark_confidence" not in out else {"landmark_confidence": out["landmark_confidence"]}
    return {
        "embedding": out["embedding"],
        "global": torch.nn.functional.normalize(out["global_feature"].float(), dim=1),
        "landmarks_px": torch.from_numpy(pixels),
        "landmarks_px_heatmap": torch.from_numpy(heatmap_only),
        "category_logits": out["category_logits"],
        "attribute_logits": out["attribute_logits"],
        "cropped": torch.as_tensor(cropped),
        # Prediction.garment_box and Prediction.clothes_type, NaN / -1 where there is none
        "garment_box": torch.tensor([[float("nan")] * 4 if b is None else list(b) for b in boxes], dtype=torch.float32),
        "clothes_type": torch.tensor([-1 if t is None else int(t) for t in clothes_types], dtype=torch.int64),
        **extra,
    }


def mirrored_outputs(predictor: Predictor, dataset: DeepFashionDataset, batch: dict) -> dict[str, torch.Tensor]:
    """The embedding of each photo's mirror image, both passes (landmark slots follow the image
    sides, so the pooled parts line up with the unmirrored photo's)."""
    photos = _photo_loader(dataset, batch)
    return {"embedding": torch.from_numpy(predictor.mirrored_embeddings([photos(i) for i in range(len(batch["index"]))]))}


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


def landmarks_to_original_pixels(landmarks_norm: np.ndarray, sizes: np.ndarray, input_side: int) -> np.ndarray:
    """Map (N, 8, 2) landmarks normalised to the letterboxed input back to original pixels; sizes (N, 2) = w, h."""
    out = np.empty_like(landmarks_norm)
    for i, (w, h) in enumerate(sizes):
        out[i] = to_original_coords(landmarks_norm[i], letterbox_geometry(int(w), int(h), input_side), normalized=True)
    return out


def evaluate_checkpoint(checkpoint: str | Path, data_root: str | Path, benchmark: str = "auto", variants: Sequence[str] = VARIANTS,
                        device: str = "auto", batch_size: int = 64, workers: int = 2, baseline_weights: Any = True,
                        max_queries: int = 0, seed: int = 0, progress: bool = True, retrieval_time: bool = False,
                        crop_below: Optional[float] = None, flip_average: bool = True) -> dict[str, Any]:
    """Run the protocol for every variant; returns a JSON-ready dict of figures.

    ``retrieval_time``: also measure variant (c) with each retrieval-time improvement of
    :mod:`fashionnet.retrieval_time` switched on alone and together (results["retrieval_time"]).
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


def _number(value: float, form: str) -> str:
    return "n/a" if value != value else format(value, form)


def real_photo_lines(rp: dict[str, Any], num_queries: int) -> list[str]:
    """The markdown table of :func:`real_photo_measures`."""
    box = rp["garment_box"]
    lines = [f"| what the page shows, on the {num_queries} query photos | |", "|---|---:|",
             f"| garment box: mean IoU with the annotated box ({box['num_photos']} photos) | {_number(box['mean_iou'], '.3f')} |"]
    lines += [f"| garment box: IoU at least {key.rsplit('_', 1)[1]} | {_number(100 * value, '.1f')}% |"
              for key, value in box.items() if key.startswith("iou_at_least_")]
    if "clothes_type" in rp:
        ct = rp["clothes_type"]
        per_type = ", ".join(f"{name} {_number(100 * v, '.1f')}%" for name, v in ct["accuracy_per_type"].items())
        lines.append(f"| clothes type (upper / lower / full body) right, of {ct['num_photos']} photos ({per_type}) | "
                     f"{_number(100 * ct['accuracy'], '.1f')}% |")
    if "landmarks_by_confidence" in rp:
        c = rp["landmarks_by_confidence"]
        lines += [f"| landmark NE of the points marked sure ({c['num_sure']} visible points) | {_number(c['ne_sure'], '.4f')} |",
                  f"| landmark NE of the points marked unsure ({c['num_unsure']}) | {_number(c['ne_unsure'], '.4f')} |",
                  f"| visible points marked sure | {_number(100 * c['sure_share'], '.1f')}% |"]
    if "mean_layout_in_box" in rp:
        m = rp["mean_layout_in_box"]
        lines += [f"| landmark NE of the clothes type's mean layout placed in the predicted box ({m['num_photos']} photos) | "
                  f"{_number(m['ne_predicted_box'], '.4f')} |",
                  f"| ... placed in the annotated box | {_number(m['ne_annotated_box'], '.4f')} |",
                  f"| ... the model's own points, on the same photos | {_number(m['ne_model'], '.4f')} |"]
    notes = []
    if box["num_without_annotated_box"]:
        notes.append(f"{box['num_without_annotated_box']} photos without an annotated box are left out of the box figures")
    if box["num_without_predicted_box"]:
        notes.append(f"{box['num_without_predicted_box']} photos got no predicted box (IoU 0)")
    return lines + (["", "; ".join(notes)] if notes else [])


def markdown_table(results: dict[str, Any]) -> str:
    """One row per variant: top-k for each k, and mAP@R."""
    variants = [v for v in VARIANTS if v in results["variants"]]
    ks = sorted({k for v in variants for k in results["variants"][v]["top_k"]})
    split = results.get("split", results["benchmark"])
    title = split if split == results["benchmark"] else f"{split} ({results['benchmark']} layout)"
    lines = [f"**{title}**: {results['num_queries']} queries, {results['num_gallery']} gallery images, "
             f"{results['backbone']} at {results['input_side']} px", "",
             "| variant | " + " | ".join(f"top-{k}" for k in ks) + " | mAP@R |",
             "|---|" + "---:|" * (len(ks) + 1)]
    for v in variants:
        r = results["variants"][v]
        label = VARIANT_LABELS[v] + (", flip-averaged" if v == "fashionnet" and results.get("flip_average") else "")
        lines.append(f"| {label} | " + " | ".join(f"{100 * r['top_k'][k]:.1f}" for k in ks) + f" | {100 * r['map_at_r']:.1f} |")
    if "landmarks" in results:
        lm = results["landmarks"]
        lines += ["", "| landmark NE | " + " | ".join(LANDMARK_NAMES) + " | average | PDL (35 px @ 512) |",
                  "|---|" + "---:|" * (len(LANDMARK_NAMES) + 2),
                  "| (c) predicted | " + " | ".join("n/a" if lm["ne_per_landmark"][n] != lm["ne_per_landmark"][n] else f"{lm['ne_per_landmark'][n]:.4f}"
                                                      for n in LANDMARK_NAMES) + f" | {lm['ne']:.4f} | {100 * lm['pdl_35px_at_512']:.1f}% |"]
        if "mean_layout_ne" in lm:
            lines.append("| floor: mean layout of the clothes type | " + " | ".join(
                "n/a" if lm["mean_layout_ne_per_landmark"][n] != lm["mean_layout_ne_per_landmark"][n] else f"{lm['mean_layout_ne_per_landmark'][n]:.4f}"
                for n in LANDMARK_NAMES) + f" | {lm['mean_layout_ne']:.4f} | |")
            lines += ["", f"predicted NE is {lm['ne_over_mean_layout']:.2f} x the mean-layout floor"]
        if lm.get("ne_heatmap_only") is not None and lm["ne_heatmap_only"] != lm["ne"]:
            lines.append(f"(the heatmaps' points alone, without pulling unsure ones towards the garment box layout: NE {lm['ne_heatmap_only']:.4f})")
    if "real_photo" in results:
        lines += ["", *real_photo_lines(results["real_photo"], results["num_queries"])]
    if "retrieval_time" in results:
        rt = results["retrieval_time"]
        rks = sorted(rt["plain"]["top_k"])
        lines += ["", "| (c) at retrieval time | " + " | ".join(f"top-{k}" for k in rks) + " | mAP@R |", "|---|" + "---:|" * (len(rks) + 1)]
        for name, r in rt.items():
            lines.append(f"| {name} | " + " | ".join(f"{100 * r['top_k'][k]:.1f}" if k in r["top_k"] else "" for k in rks)
                         + f" | {100 * r['map_at_r']:.1f} |")
    extras = []
    if "cropped_share" in results:
        c = results["cropped_share"]
        extras.append(f"cropped to the garment and embedded again (box below {c['crop_below']:.2f} of the photo): "
                      f"{100 * c['queries']:.1f}% of queries, {100 * c['gallery']:.1f}% of gallery photos")
    if "category_accuracy" in results:
        extras.append("category accuracy " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in results["category_accuracy"].items()))
    if "attribute_recall" in results:
        extras.append("attribute recall " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in results["attribute_recall"].items()))
    if extras:
        lines += ["", "; ".join(extras)]
    return "\n".join(lines) + "\n"


def plot_topk(results: dict[str, Any], path: str | Path) -> None:
    """Top-k accuracy against k, one line per variant, as the paper plots it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    for v in VARIANTS:
        if v in results["variants"]:
            topk = results["variants"][v]["top_k"]
            ks = sorted(topk)
            ax.plot(ks, [100 * topk[k] for k in ks], marker="o", label=VARIANT_LABELS[v])
    ax.set_xlabel("k (retrieved images)")
    ax.set_ylabel("top-k accuracy (%)")
    ax.set_title(f"{results.get('split', results['benchmark'])} retrieval ({results['num_queries']} queries)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(results: dict[str, Any], out_dir: str | Path, name: Optional[str] = None) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = name or results.get("split") or results["benchmark"]
    paths = {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md", "plot": out_dir / f"{stem}_topk.png"}
    paths["json"].write_text(json.dumps(results, indent=2, default=float))
    paths["markdown"].write_text(markdown_table(results))
    plot_topk(results, paths["plot"])
    return paths
