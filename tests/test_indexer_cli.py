"""The `indexer` command end to end: build, query, add, remove, info, shards, bad input, killed builds."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fashionnet.models.checkpoint import load_checkpoint, save_checkpoint
from indexer.layout import live_data_file
from tests.cli_helpers import run_cli
from indexer.store import EmbeddingIndex

REPO = Path(__file__).resolve().parents[1]


def test_query_of_a_gallery_image_returns_itself_first(capsys, tiny_index):
    gallery = EmbeddingIndex.load(tiny_index).metadata
    for path, item in gallery[["image_path", "item_id"]].head(3).itertuples(index=False):
        code, out, _ = run_cli(capsys, "query", tiny_index, path, "-k", 3, "--json", "--device", "cpu")
        assert code == 0
        results = json.loads(out)["results"]
        assert results[0]["image_path"] == path and results[0]["item_id"] == item
        assert results[0]["score"] == pytest.approx(1.0, abs=1e-4)
        scores = [r["score"] for r in results]
        assert scores == sorted(scores, reverse=True)


def test_query_prints_a_table(capsys, tiny_index):
    path = EmbeddingIndex.load(tiny_index).metadata["image_path"].iloc[0]
    code, out, _ = run_cli(capsys, "query", tiny_index, path, "-k", 2)
    assert code == 0
    assert "rank" in out and "score" in out and "item_id" in out
    assert len([l for l in out.splitlines() if l.strip().startswith(("1 ", "2 "))]) == 2


def test_manifest_and_metadata_describe_the_build(tiny_index, tiny_checkpoint):
    manifest = json.loads((tiny_index / "manifest.json").read_text())
    ckpt = load_checkpoint(tiny_checkpoint)
    assert manifest["model_checksum"] == ckpt["model_checksum"]
    assert manifest["model_config"] == ckpt["model_config"]
    # 32 fusion values and the tiny conv5's 64 pooled ones (the training default appends them)
    assert manifest["embedding_dim"] == 32 + 64 and manifest["metric"] == "ip"
    assert manifest["count"] == len(EmbeddingIndex.load(tiny_index))
    assert manifest["created_utc"] and manifest["package_version"]
    meta = EmbeddingIndex.load(tiny_index).metadata
    for col in ("image_path", "item_id", "category", "clothes_type", "predicted_category", "pred_left_collar_x", "pred_right_hem_vis"):
        assert col in meta.columns


def test_info(capsys, tiny_index):
    code, out, _ = run_cli(capsys, "info", tiny_index, "--json")
    assert code == 0
    info = json.loads(out)
    assert info["count"] > 0 and info["dim"] == 32 + 64 and info["index_factory"] == "Flat"
    code, out, _ = run_cli(capsys, "info", tiny_index)
    assert code == 0 and re.search(r"^flip_average\s+True$", out, re.M)


def test_add_and_remove_keep_ids_and_metadata_consistent(capsys, index_copy, synth_root, tmp_path):
    before = EmbeddingIndex.load(index_copy)
    n0, next0 = before.ntotal, before.info()["next_id"]
    shop = tmp_path / "newshop" / "new_item_A"
    shop.mkdir(parents=True)
    src = sorted((synth_root / "inshop" / "img").rglob("*.jpg"))[:2]
    for i, p in enumerate(src):
        shutil.copy(p, shop / f"view_{i}.jpg")
    code, out, _ = run_cli(capsys, "add", index_copy, tmp_path / "newshop", "--device", "cpu", "--workers", 0)
    assert code == 0, out
    after = EmbeddingIndex.load(index_copy)
    assert after.ntotal == n0 + 2
    new_rows = after.metadata[after.metadata["item_id"] == "new_item_A"]
    assert sorted(new_rows.index) == [next0, next0 + 1]  # fresh ids, old ones untouched
    assert before.metadata.index.isin(after.metadata.index).all()
    # the new item is found by its own photo
    code, out, _ = run_cli(capsys, "query", index_copy, shop / "view_0.jpg", "-k", 1, "--json")
    assert json.loads(out)["results"][0]["item_id"] == "new_item_A"

    victim = before.metadata["item_id"].iloc[0]
    victim_count = int((before.metadata["item_id"] == victim).sum())
    code, out, _ = run_cli(capsys, "remove", index_copy, "--item", victim)
    assert code == 0
    final = EmbeddingIndex.load(index_copy)
    assert final.ntotal == n0 + 2 - victim_count
    assert victim not in set(final.metadata["item_id"])
    # every remaining id still returns its own metadata row: query each kept image, it comes back as itself
    path = final.metadata["image_path"].iloc[0]
    code, out, _ = run_cli(capsys, "query", index_copy, path, "-k", final.ntotal, "--json")
    results = json.loads(out)["results"]
    assert results[0]["image_path"] == path
    assert victim not in {r["item_id"] for r in results}
    code, _, err = run_cli(capsys, "remove", index_copy, "--item", "no_such_item")
    assert code == 1 and "not in the index" in err


def _bad_images(folder: Path, good: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("hello")
    data = good.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    side = 9000
    Image.new("1", (side, side)).save(folder / "bomb.png")
    img = Image.open(good)
    img.convert("CMYK").save(folder / "cmyk.jpg")
    img.convert("RGBA").save(folder / "alpha.png")
    img.convert("L").save(folder / "gray.png")
    Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257).save(folder / "sixteen.png")
    return {"zero.jpg": "empty", "text.jpg": "not an image", "truncated.jpg": "corrupt or truncated", "bomb.png": "decompression-bomb"}


def test_build_from_a_plain_folder_skips_and_reports_bad_images(capsys, tiny_checkpoint, synth_root, tmp_path):
    good = next((synth_root / "inshop" / "img").rglob("*.jpg"))
    folder = tmp_path / "shop"
    bad = _bad_images(folder, good)
    shutil.copy(good, folder / "good.jpg")
    out_dir = tmp_path / "folder_index"
    code, out, err = run_cli(capsys, "build", "--checkpoint", tiny_checkpoint, "--images", folder, "--out", out_dir, "--workers", 0)
    assert code == 0, err
    index = EmbeddingIndex.load(out_dir)
    assert sorted(index.metadata["item_id"]) == ["alpha", "cmyk", "good", "gray", "sixteen"]
    for name, problem in bad.items():
        assert name in err and problem in err
    assert f"skipped {len(bad)} unreadable" in err
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["extra"]["skipped_count"] == len(bad)
    # the odd modes embed like the plain image they came from
    code, out, _ = run_cli(capsys, "query", out_dir, folder / "good.jpg", "-k", 5, "--json")
    scores = {r["item_id"]: r["score"] for r in json.loads(out)["results"]}
    assert scores["good"] == pytest.approx(1.0, abs=1e-4)
    assert scores["cmyk"] > 0.95 and scores["alpha"] > 0.98
    assert scores["gray"] == pytest.approx(scores["sixteen"], abs=0.02)


def test_query_with_a_bad_image_is_a_clear_error(capsys, tiny_index, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code, out, err = run_cli(capsys, "query", tiny_index, bad)
    assert code == 2
    assert "broken.jpg" in err and "Traceback" not in err


def test_missing_and_damaged_indexes_are_clear_errors(capsys, index_copy, tmp_path):
    code, _, err = run_cli(capsys, "info", tmp_path / "nowhere")
    assert code == 2 and "no index at" in err and "does not exist" in err
    data = live_data_file(index_copy, "index.faiss").read_bytes()
    live_data_file(index_copy, "index.faiss").write_bytes(data[: len(data) // 2])
    code, _, err = run_cli(capsys, "info", index_copy)
    assert code == 2 and "index.faiss is damaged" in err and "Traceback" not in err


def test_index_from_another_model_is_refused(capsys, tiny_index, tiny_checkpoint, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    other = tmp_path / "other.pt"
    state = {k: (v + 0.01 if v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    save_checkpoint(other, model_state=state, model_config=ckpt["model_config"], label_maps=ckpt["label_maps"],
                    preprocessing=ckpt["preprocessing"], epoch=0)
    image = EmbeddingIndex.load(tiny_index).metadata["image_path"].iloc[0]
    code, _, err = run_cli(capsys, "query", tiny_index, image, "--checkpoint", other)
    assert code == 2 and "was built by model" in err and "rebuild it with the current model" in err

    from fashionnet.models import FashionNetConfig, create_model

    config = FashionNetConfig.from_dict({**ckpt["model_config"], "embedding_dim": 48})
    wide = tmp_path / "wide.pt"
    save_checkpoint(wide, model_state=create_model(config).state_dict(), model_config=config.to_dict(), label_maps=ckpt["label_maps"],
                    preprocessing=ckpt["preprocessing"], epoch=0)
    code, _, err = run_cli(capsys, "query", tiny_index, image, "--checkpoint", wide)
    # fusion + the tiny conv5's 64 pooled appearance values
    assert code == 2 and f"{32 + 64}-d embeddings" in err and f"{48 + 64}-d" in err


def test_shards_merge_into_the_full_index(capsys, tiny_checkpoint, synth_root, tmp_path):
    root = synth_root / "inshop"
    parts = []
    for i in range(2):
        out = tmp_path / f"shard{i}"
        code, _, err = run_cli(capsys, "build", "--checkpoint", tiny_checkpoint, "--data-root", root, "--shard", f"{i}/2", "--out", out,
                               "--workers", 0)
        assert code == 0, err
        parts.append(out)
    full = tmp_path / "full"
    assert run_cli(capsys, "build", "--checkpoint", tiny_checkpoint, "--data-root", root, "--out", full, "--workers", 0)[0] == 0
    merged = tmp_path / "merged"
    assert run_cli(capsys, "merge", merged, *parts)[0] == 0
    a, b = EmbeddingIndex.load(full), EmbeddingIndex.load(merged)
    assert a.ntotal == b.ntotal
    assert sorted(a.metadata["image_path"]) == sorted(b.metadata["image_path"])
    path = a.metadata["image_path"].iloc[3]
    _, out_a, _ = run_cli(capsys, "query", full, path, "-k", 5, "--json")
    _, out_b, _ = run_cli(capsys, "query", merged, path, "-k", 5, "--json")
    assert [r["image_path"] for r in json.loads(out_a)["results"]] == [r["image_path"] for r in json.loads(out_b)["results"]]


def test_ivf_factory_and_nprobe(capsys, tiny_checkpoint, synth_root, tmp_path):
    out = tmp_path / "ivf"
    code, _, err = run_cli(capsys, "build", "--checkpoint", tiny_checkpoint, "--data-root", synth_root / "inshop", "--split", "all",
                           "--index-factory", "IVF4,Flat", "--nprobe", "4", "--out", out, "--workers", 0)
    assert code == 0, err
    info = EmbeddingIndex.load(out).info()
    assert info["nlist"] == 4 and info["nprobe"] == 4
    path = EmbeddingIndex.load(out).metadata["image_path"].iloc[0]
    _, res, _ = run_cli(capsys, "query", out, path, "-k", 1, "--json")
    assert json.loads(res)["results"][0]["image_path"] == path  # nprobe = nlist: exact


@pytest.mark.slow
def test_killed_build_leaves_the_previous_index_intact(tiny_index, tiny_checkpoint, synth_root, tmp_path):
    target = tmp_path / "live"
    shutil.copytree(tiny_index, target)
    before = live_data_file(target, "index.faiss").read_bytes(), json.loads((target / "manifest.json").read_text())
    many = tmp_path / "many"
    many.mkdir()
    src = sorted((synth_root / "inshop" / "img").rglob("*.jpg"))
    for i in range(400):
        shutil.copy(src[i % len(src)], many / f"p{i:04d}.jpg")
    cmd = [sys.executable, "-m", "indexer.cli", "build", "--checkpoint", str(tiny_checkpoint), "--images", str(many), "--out", str(target),
           "--workers", "0", "--batch-size", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = ""
    deadline = time.time() + 120
    while "embedding gallery" not in seen and time.time() < deadline:  # wait until it is mid-embedding
        seen += proc.stdout.read(1) or ""
        if proc.poll() is not None:
            break
    assert proc.poll() is None, f"the build ended before it could be killed: {seen[-500:]}"
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert live_data_file(target, "index.faiss").read_bytes() == before[0]
    assert json.loads((target / "manifest.json").read_text()) == before[1]
    assert EmbeddingIndex.load(target).ntotal == before[1]["count"]


def test_a_large_catalogue_gets_an_ivf_index_without_asking(capsys, tiny_checkpoint, synth_root, tmp_path, monkeypatch):
    from indexer import build

    assert build.default_index_factory(build.AUTO_IVF_FROM - 1) is None
    assert build.default_index_factory(100_000) == "IVF1024,Flat" and build.default_index_factory(1_000_000) == "IVF2048,Flat"
    assert build.default_index_factory(build.AUTO_IVF_FROM) == "IVF512,Flat"
    # the tiny gallery stands in for a large one: it gets IVF with enough points per list, and still finds itself
    monkeypatch.setattr(build, "AUTO_IVF_FROM", 1)
    out = tmp_path / "auto"
    code, _, err = run_cli(capsys, "build", "--checkpoint", tiny_checkpoint, "--data-root", synth_root / "consumer2shop", "--out", out,
                           "--workers", 0, "--no-progress", "--device", "cpu")
    assert code == 0, err
    index = EmbeddingIndex.load(out)
    nlist = index.info()["nlist"]
    assert index.index_factory.startswith("IVF") and (nlist == 1 or nlist * build.IVF_MIN_POINTS_PER_LIST <= len(index))
    path = index.metadata["image_path"].iloc[0]
    code, out_text, _ = run_cli(capsys, "query", out, path, "-k", 1, "--per-image")
    assert code == 0 and index.metadata["item_id"].iloc[0] in out_text


def test_flip_averaging_is_recorded_in_the_index_and_followed(capsys, tiny_index, tiny_checkpoint, synth_root, tmp_path):
    """The build records whether it averaged each photo with its mirror image; queries, adds and
    merges follow the index, and a Predictor that embeds the other way is refused."""
    from fashionnet.inference.predictor import Predictor
    from indexer.errors import IndexMismatchError
    from indexer.search import SearchEngine

    assert json.loads((tiny_index / "manifest.json").read_text())["extra"]["flip_average"] is True
    assert SearchEngine.open(tiny_index, device="cpu").predictor.flip_average

    photos = sorted((synth_root / "consumer2shop").glob("img/*/*/*/shop_*.jpg"))[:4]
    shop = tmp_path / "shop"
    for i, photo in enumerate(photos):
        (shop / f"item{i}").mkdir(parents=True)
        shutil.copy(photo, shop / f"item{i}" / photo.name)
    one_view = tmp_path / "one_view"
    code, _, _ = run_cli(capsys, "build", "--checkpoint", tiny_checkpoint, "--images", shop, "--out", one_view,
                         "--no-flip-average", "--workers", 0, "--no-progress", "--device", "cpu")
    assert code == 0
    assert json.loads((one_view / "manifest.json").read_text())["extra"]["flip_average"] is False
    engine = SearchEngine.open(one_view, device="cpu")
    assert not engine.predictor.flip_average
    first = engine.query(shop / "item2" / photos[2].name, k=1, per_item=False).matches.iloc[0]
    assert first["item_id"] == "item2" and first["score"] == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(IndexMismatchError, match="mirror"):
        SearchEngine(EmbeddingIndex.load(one_view), Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch"))

    code, _, err = run_cli(capsys, "merge", tmp_path / "merged", tiny_index, one_view)
    assert code != 0 and "flip averaging" in err and not (tmp_path / "merged").exists()
