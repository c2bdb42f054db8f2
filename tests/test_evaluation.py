"""The evaluation script's protocol figures agree with an independent numpy computation.

Top-k, mAP@R, NE and PDL are recomputed here from their definitions, on embeddings and landmarks
the Predictor (or the model itself) gives for the official query and gallery images:

- top-k: a query is a hit at k when any of its k nearest gallery images shows its item; hits / queries.
- mAP@R: for a query with R gallery images of its item, (1/R) * sum over the first R results of
  precision@i at every relevant result i.
- NE: mean over visible ground-truth landmarks of the distance between prediction and truth with x
  divided by the image width and y by its height.
- PDL (35 px at 512): share of visible landmarks whose pixel distance, on the image scaled so its
  long side is 512, is at most 35.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from fashionnet.data.readers import read_consumer2shop, read_inshop
from fashionnet.data.transforms import build_transforms
from fashionnet.evaluation.benchmark import evaluate_checkpoint
from fashionnet.evaluation.report import markdown_table, write_report
from fashionnet.inference.predictor import Predictor
from fashionnet.landmarks import LANDMARK_NAMES
from fashionnet.models.checkpoint import load_checkpoint, model_from_checkpoint


def independent_retrieval(q_emb, q_items, g_emb, g_items, ks):
    sims = np.asarray(q_emb, np.float64) @ np.asarray(g_emb, np.float64).T
    order = np.argsort(-sims, axis=1, kind="stable")
    g_items = np.asarray(g_items, dtype=object)
    top_k = {k: float(np.mean([q in set(g_items[order[i, :k]]) for i, q in enumerate(q_items)])) for k in ks}
    aps = []
    for i, q in enumerate(q_items):
        r = int((g_items == q).sum())
        if r == 0:
            continue
        relevant = g_items[order[i, :r]] == q
        precision = np.cumsum(relevant) / np.arange(1, r + 1)
        aps.append(float((precision * relevant).sum() / r))
    return top_k, float(np.mean(aps))


def assert_retrieval_matches(variant, q_emb, q_items, g_emb, g_items):
    top_k, map_r = independent_retrieval(q_emb, q_items, g_emb, g_items, variant["top_k"])
    for k, rate in variant["top_k"].items():
        assert rate == pytest.approx(top_k[k], abs=1e-12), k
    assert variant["map_at_r"] == pytest.approx(map_r, abs=1e-9)


@pytest.fixture(scope="module")
def consumer2shop(tiny_checkpoint, synth_root):
    root = synth_root / "consumer2shop"
    results = evaluate_checkpoint(tiny_checkpoint, root, variants=("imagenet", "global", "fashionnet", "gt_landmarks"), workers=0,
                                  baseline_weights=False, progress=False)
    frame = read_consumer2shop(root)
    test = frame[frame["split"] == "test"]
    return root, results, test[test["source"] == "consumer"], test[test["source"] == "shop"]


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):
    return Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch")


def test_consumer2shop_fashionnet_variant_matches_brute_force(consumer2shop, predictor):
    root, results, queries, gallery = consumer2shop
    assert results["num_queries"] == len(queries) and results["num_gallery"] == len(gallery)
    assert "all_photos" not in results, "shop and consumer photos are different kinds: not measured together"
    embed = lambda rows: np.stack([p.embedding for p in predictor.predict_batch([root / x for x in rows["image_path"]])])  # noqa: E731
    assert_retrieval_matches(results["variants"]["fashionnet"], embed(queries), queries["item_id"].to_numpy(),
                             embed(gallery), gallery["item_id"].to_numpy())


def test_global_and_ground_truth_variants_match_brute_force(consumer2shop, tiny_checkpoint, predictor):
    root, results, queries, gallery = consumer2shop
    ckpt = load_checkpoint(tiny_checkpoint)
    model, config = model_from_checkpoint(ckpt, tiny_checkpoint)
    model.eval()
    transform = build_transforms(train=False, size=int(ckpt["preprocessing"]["image_size"]))

    def features(rows):
        glob, gt = [], []
        for _, row in rows.iterrows():
            xy = np.array([[row[f"{n}_x"], row[f"{n}_y"]] for n in LANDMARK_NAMES], dtype=np.float32)
            vis = np.array([row[f"{n}_vis"] for n in LANDMARK_NAMES], dtype=np.int64)
            image, landmarks, visibility, _ = transform(Image.open(root / row["image_path"]), xy, vis)
            with torch.no_grad():
                # (b) is what the product computes: both passes, as for (c)
                out, _, _ = predictor.forward_photos([root / row["image_path"]])
                glob.append(torch.nn.functional.normalize(out["global_feature"].float(), dim=1)[0].numpy())
                gt.append(model(image[None], landmarks[None], visibility[None])["embedding"][0].numpy())
        return np.stack(glob), np.stack(gt)

    q_glob, q_gt = features(queries)
    g_glob, g_gt = features(gallery)
    q_items, g_items = queries["item_id"].to_numpy(), gallery["item_id"].to_numpy()
    assert_retrieval_matches(results["variants"]["global"], q_glob, q_items, g_glob, g_items)
    assert_retrieval_matches(results["variants"]["gt_landmarks"], q_gt, q_items, g_gt, g_items)


def test_imagenet_baseline_figures_are_rates(consumer2shop):
    _, results, _, _ = consumer2shop
    baseline = results["variants"]["imagenet"]
    rates = [baseline["top_k"][k] for k in sorted(baseline["top_k"])]
    assert all(0 <= r <= 1 for r in rates) and rates == sorted(rates)
    assert 0 <= baseline["map_at_r"] <= 1


def test_landmark_error_and_pdl_match_their_definitions(consumer2shop, predictor):
    root, results, queries, _ = consumer2shop
    errors = {n: [] for n in LANDMARK_NAMES}
    detected = []
    for _, row in queries.iterrows():
        pred = predictor.predict(root / row["image_path"])
        width, height = Image.open(root / row["image_path"]).size
        for lm in pred.landmarks:
            if row[f"{lm.name}_vis"] != 0:
                continue
            dx, dy = lm.x - row[f"{lm.name}_x"], lm.y - row[f"{lm.name}_y"]
            errors[lm.name].append(np.hypot(dx / width, dy / height))
            detected.append(np.hypot(dx, dy) * 512 / max(width, height) <= 35)
    every = [e for name in LANDMARK_NAMES for e in errors[name]]
    figures = results["landmarks"]
    assert figures["num_visible"] == len(every) > 0
    assert figures["ne"] == pytest.approx(np.mean(every), rel=1e-4)
    for name in LANDMARK_NAMES:
        if errors[name]:
            assert figures["ne_per_landmark"][name] == pytest.approx(np.mean(errors[name]), rel=1e-4), name
        else:
            assert np.isnan(figures["ne_per_landmark"][name]), name
    # A landmark within float noise of the 35 px threshold may fall either way.
    assert figures["pdl_35px_at_512"] == pytest.approx(np.mean(detected), abs=1.01 / len(detected))


def test_mean_layout_floor_matches_its_definition(consumer2shop):
    root, results, queries, _ = consumer2shop
    relative = {}  # (clothes type, slot) -> visible points, x / width and y / height
    sizes = {}
    for _, row in queries.iterrows():
        sizes[row["image_path"]] = Image.open(root / row["image_path"]).size
        for name in LANDMARK_NAMES:
            if row[f"{name}_vis"] == 0:
                w, h = sizes[row["image_path"]]
                relative.setdefault((row["clothes_type"], name), []).append((row[f"{name}_x"] / w, row[f"{name}_y"] / h))
    errors = []
    for _, row in queries.iterrows():
        w, h = sizes[row["image_path"]]
        for name in LANDMARK_NAMES:
            if row[f"{name}_vis"] == 0:
                mx, my = np.mean(relative[(row["clothes_type"], name)], axis=0)
                errors.append(np.hypot(mx - row[f"{name}_x"] / w, my - row[f"{name}_y"] / h))
    figures = results["landmarks"]
    assert figures["mean_layout_ne"] == pytest.approx(np.mean(errors), rel=1e-6)
    assert figures["ne_over_mean_layout"] == pytest.approx(figures["ne"] / np.mean(errors), rel=1e-6)
    assert "mean layout" in markdown_table(results)


def test_report_is_named_after_a_split_folder(tiny_checkpoint, synth_root, tmp_path):
    shifted = tmp_path / "style_shift"
    shutil.copytree(synth_root / "consumer2shop", shifted)
    results = evaluate_checkpoint(tiny_checkpoint, shifted, variants=("fashionnet",), workers=0, progress=False)
    paths = write_report(results, tmp_path / "reports")
    assert paths["json"].name == "style_shift.json" and results["benchmark"] == "consumer2shop"
    assert markdown_table(results).startswith("**style_shift (consumer2shop layout)**")


def test_inshop_protocol_matches_brute_force(tiny_checkpoint, synth_root, predictor):
    root = synth_root / "inshop"
    results = evaluate_checkpoint(tiny_checkpoint, root, variants=("fashionnet",), workers=0, progress=False)
    frame = read_inshop(root)
    queries, gallery = frame[frame["split"] == "query"], frame[frame["split"] == "gallery"]
    assert results["benchmark"] == "inshop"
    assert results["num_queries"] == len(queries) and results["num_gallery"] == len(gallery)
    embed = lambda rows: np.stack([p.embedding for p in predictor.predict_batch([root / x for x in rows["image_path"]])])  # noqa: E731
    assert_retrieval_matches(results["variants"]["fashionnet"], embed(queries), queries["item_id"].to_numpy(),
                             embed(gallery), gallery["item_id"].to_numpy())
    # all photos together: each searches all the others, and what the page shows is measured on every photo
    every = np.concatenate([embed(queries), embed(gallery)])
    items = np.concatenate([queries["item_id"].to_numpy(), gallery["item_id"].to_numpy()])
    hits = [items[int(np.argmax(np.where(np.arange(len(items)) == i, -np.inf, every @ every[i])))] == items[i] for i in range(len(items))]
    all_photos = results["all_photos"]
    assert all_photos["num_photos"] == len(items) == all_photos["garment_box"]["num_photos"]
    assert all_photos["all_vs_all_top1"] == pytest.approx(np.mean(hits))
    assert "all-vs-all top-1" in markdown_table(results)


def test_report_files(consumer2shop, tmp_path):
    _, results, _, _ = consumer2shop
    paths = write_report(results, tmp_path)
    assert json.loads(paths["json"].read_text())["benchmark"] == "consumer2shop"
    table = paths["markdown"].read_text()
    assert "(c) FashionNet, predicted landmarks" in table and "top-1" in table
    assert paths["plot"].stat().st_size > 1000


def test_real_photo_measures_match_the_predictor(consumer2shop, predictor):
    root, results, queries, _ = consumer2shop
    rp = results["real_photo"]
    ious, type_right, sure, unsure = [], [], [], []
    boxed = {}  # image -> (annotated box, predicted box, size)
    for _, row in queries.iterrows():
        pred = predictor.predict(root / row["image_path"])
        w, h = Image.open(root / row["image_path"]).size
        a = np.array([row["bbox_x1"], row["bbox_y1"], row["bbox_x2"], row["bbox_y2"]], dtype=float)
        p = np.array(pred.garment_box, dtype=float)
        inter = max(0, min(a[2], p[2]) - max(a[0], p[0])) * max(0, min(a[3], p[3]) - max(a[1], p[1]))
        ious.append(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (p[2] - p[0]) * (p[3] - p[1]) - inter))
        boxed[row["image_path"]] = (a, p, (w, h))
        type_right.append(pred.clothes_type == row["clothes_type"])
        for lm in pred.landmarks:
            if row[f"{lm.name}_vis"] == 0:
                (unsure if lm.low_confidence else sure).append(np.hypot((lm.x - row[f"{lm.name}_x"]) / w, (lm.y - row[f"{lm.name}_y"]) / h))
    box = rp["garment_box"]
    assert (box["num_photos"], box["num_without_annotated_box"], box["num_without_predicted_box"]) == (len(queries), 0, 0)
    assert box["mean_iou"] == pytest.approx(np.mean(ious), abs=1e-4)
    # a box within float noise of a threshold may fall either way
    for t in (0.5, 0.75):
        assert box[f"iou_at_least_{t:g}"] == pytest.approx(np.mean(np.array(ious) >= t), abs=1.01 / len(ious))
    assert rp["clothes_type"]["accuracy"] == pytest.approx(np.mean(type_right))
    by_confidence = rp["landmarks_by_confidence"]
    assert (by_confidence["num_sure"], by_confidence["num_unsure"]) == (len(sure), len(unsure))
    assert by_confidence["num_sure"] + by_confidence["num_unsure"] == results["landmarks"]["num_visible"]
    assert by_confidence["sure_share"] == pytest.approx(len(sure) / (len(sure) + len(unsure)))
    for key, errors in (("ne_sure", sure), ("ne_unsure", unsure)):
        assert (np.isnan(by_confidence[key]) and not errors) or by_confidence[key] == pytest.approx(np.mean(errors), rel=1e-4)

    # the mean layout within the annotated box, per clothes type and slot, from its definition
    relative = {}
    for _, row in queries.iterrows():
        a, _, _ = boxed[row["image_path"]]
        for name in LANDMARK_NAMES:
            if row[f"{name}_vis"] == 0:
                relative.setdefault((row["clothes_type"], name), []).append(
                    ((row[f"{name}_x"] - a[0]) / (a[2] - a[0]), (row[f"{name}_y"] - a[1]) / (a[3] - a[1])))
    in_box = {"ne_annotated_box": [], "ne_predicted_box": []}
    for _, row in queries.iterrows():
        a, p, (w, h) = boxed[row["image_path"]]
        for name in LANDMARK_NAMES:
            if row[f"{name}_vis"] == 0:
                rx, ry = np.mean(relative[(row["clothes_type"], name)], axis=0)
                for key, b in (("ne_annotated_box", a), ("ne_predicted_box", p)):
                    x, y = b[0] + rx * (b[2] - b[0]), b[1] + ry * (b[3] - b[1])
                    in_box[key].append(np.hypot((x - row[f"{name}_x"]) / w, (y - row[f"{name}_y"]) / h))
    layout = rp["mean_layout_in_box"]
    assert layout["num_photos"] == len(queries)
    assert layout["ne_annotated_box"] == pytest.approx(np.mean(in_box["ne_annotated_box"]), rel=1e-5)
    assert layout["ne_predicted_box"] == pytest.approx(np.mean(in_box["ne_predicted_box"]), rel=1e-4)
    assert layout["ne_model"] == pytest.approx(results["landmarks"]["ne"], rel=1e-6)
    for value in (box["mean_iou"], rp["clothes_type"]["accuracy"], by_confidence["sure_share"], layout["ne_annotated_box"]):
        assert 0 <= value <= 1

    table = markdown_table(results)
    for line in ("garment box: mean IoU with the annotated box", "garment box: IoU at least 0.75", "clothes type (upper / lower / full body)",
                 "points marked sure", "points marked unsure", "mean layout placed in the predicted box", "placed in the annotated box"):
        assert line in table, line
