"""The evaluation script's protocol figures agree with an independent numpy computation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fashionnet.data.readers import read_consumer2shop
from fashionnet.evaluation import evaluate_checkpoint, write_report
from fashionnet.inference import Predictor


def test_consumer2shop_protocol_matches_brute_force(tiny_checkpoint, synth_root, tmp_path):
    root = synth_root / "consumer2shop"
    results = evaluate_checkpoint(tiny_checkpoint, root, variants=("imagenet", "global", "fashionnet", "gt_landmarks"), workers=0,
                                  baseline_weights=False, progress=False)
    frame = read_consumer2shop(root)
    test = frame[frame["split"] == "test"]
    queries, gallery = test[test["source"] == "consumer"], test[test["source"] == "shop"]
    assert results["num_queries"] == len(queries) and results["num_gallery"] == len(gallery)

    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
    embed = lambda rows: np.stack([p.embedding for p in predictor.predict_batch([root / x for x in rows["image_path"]])])
    sims = embed(queries) @ embed(gallery).T
    order = np.argsort(-sims, axis=1, kind="stable")
    g_items = gallery["item_id"].to_numpy()
    for k, rate in results["variants"]["fashionnet"]["top_k"].items():
        hits = [q_item in set(g_items[order[i, :k]]) for i, q_item in enumerate(queries["item_id"])]
        assert rate == pytest.approx(np.mean(hits), abs=1e-12), k
    assert set(results["variants"]) == {"imagenet", "global", "fashionnet", "gt_landmarks"}
    assert 0 <= results["landmarks"]["ne"] < 1 and 0 <= results["landmarks"]["pdl_35px_at_512"] <= 1

    paths = write_report(results, tmp_path)
    assert json.loads(paths["json"].read_text())["benchmark"] == "consumer2shop"
    table = paths["markdown"].read_text()
    assert "(c) FashionNet, predicted landmarks" in table and "top-1" in table
    assert paths["plot"].stat().st_size > 1000
