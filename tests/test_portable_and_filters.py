"""A shop's own photos: filters that work without annotations, indexes that survive a move, batch
queries, and results that explain their score."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fashionnet.data.readers import read_consumer2shop
from indexer.cli import main as indexer
from tests.cli_helpers import run_cli
from indexer.filter_values import UnknownFilterValue
from indexer.search import Filters, SearchEngine
from indexer.store import EmbeddingIndex

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shop(synth_root, tmp_path_factory) -> Path:
    """A shop folder of unannotated photos, one sub-folder per item (the test split's shop photos)."""
    root = synth_root / "consumer2shop"
    frame = read_consumer2shop(root)
    rows = frame[(frame["split"] == "test") & (frame["source"] == "shop")]
    folder = tmp_path_factory.mktemp("shop") / "shop_photos"
    for image, item in zip(rows["image_path"], rows["item_id"]):
        (folder / item).mkdir(parents=True, exist_ok=True)
        shutil.copy(root / image, folder / item / Path(image).name)
    return folder


@pytest.fixture(scope="module")
def shop_index(shop, tiny_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shopidx") / "idx"
    code = indexer(["build", "--checkpoint", str(tiny_checkpoint), "--images", str(shop), "--out", str(out), "--workers", "0",
                    "--no-progress", "--copy-model"])
    assert code == 0
    return out


def test_a_shop_index_without_annotations_filters_by_predicted_clothes_type_and_category(shop_index, shop):
    engine = SearchEngine.open(shop_index, device="cpu")
    gallery = engine.index.metadata
    assert gallery["clothes_type"].isna().all() and gallery["category"].isna().all()  # nothing annotated
    photo = next(shop.rglob("*.jpg"))
    choices = engine.filter_choices()
    assert choices["clothes_type"] and choices["category"]
    for clothes_type in choices["clothes_type"]:
        matches = engine.query(photo, k=50, clothes_type=clothes_type).matches
        expected = set(gallery.index[gallery["predicted_clothes_type"] == clothes_type])
        assert set(matches["id"]) == expected  # every image of that type, and only those
    category = choices["category"][0]
    matches = engine.query(photo, k=50, category=category.upper()).matches  # case does not matter
    assert set(matches["id"]) == set(gallery.index[gallery["predicted_category"] == category])
    with pytest.raises(UnknownFilterValue) as refused:  # not an empty answer that looks like "no match"
        engine.query(photo, k=5, category="No such category")
    assert category in refused.value.allowed and set(engine.predictor.category_names) <= set(refused.value.allowed)


def test_filters_agree_with_a_brute_force_over_the_metadata(shop_index, shop):
    engine = SearchEngine.open(shop_index, device="cpu")
    photo = sorted(shop.rglob("*.jpg"))[1]
    prediction = engine.predictor.predict(photo)
    gallery = engine.index.metadata
    vectors, ids = engine.index.export_vectors()
    clothes_type = engine.filter_choices()["clothes_type"][0]
    allowed = set(gallery.index[gallery["predicted_clothes_type"] == clothes_type])
    order = [i for i in ids[np.argsort(-(vectors @ prediction.embedding))] if i in allowed][:3]
    got = engine.search_embedding(prediction.embedding, 3, Filters(clothes_type=clothes_type))
    assert got["id"].tolist() == order


def test_cli_query_filters_by_category_and_clothes_type(capsys, shop_index, shop):
    photo = next(shop.rglob("*.jpg"))
    category = SearchEngine.open(shop_index, device="cpu").filter_choices()["category"][0]
    code, out, err = run_cli(capsys, "query", shop_index, photo, "-k", 50, "--category", category, "--json")
    assert code == 0, err
    results = json.loads(out)["results"]
    gallery = EmbeddingIndex.load(shop_index).metadata
    assert len(results) == int((gallery["predicted_category"] == category).sum())


def test_a_moved_index_answers_from_the_cli_with_its_carried_model(capsys, shop, tiny_checkpoint, tmp_path):
    # a shop folder holding its photos and its index, moved as a whole to another place
    original = tmp_path / "shop_v1"
    shutil.copytree(shop, original / "photos")
    checkpoint = tmp_path / "model.pt"
    shutil.copy(tiny_checkpoint, checkpoint)
    code, _, err = run_cli(capsys, "build", "--checkpoint", checkpoint, "--images", original / "photos", "--out", original / "index",
                           "--workers", 0, "--no-progress", "--copy-model")
    assert code == 0, err
    moved = tmp_path / "moved" / "shop"
    shutil.move(str(original), str(moved))
    checkpoint.unlink()  # nothing absolute is left to find
    photo = sorted((moved / "photos").rglob("*.jpg"))[0]
    code, out, err = run_cli(capsys, "query", moved / "index", photo, "-k", 3, "--json")
    assert code == 0, err
    first = json.loads(out)["results"][0]
    assert first["image_path"] == str(photo) and Path(first["image_path"]).is_file()
    # the page and the API open it through the same SearchEngine
    engine = SearchEngine.open(moved / "index", device="cpu")
    assert all(Path(p).is_file() for p in engine.item_images(first["item_id"])["image_path"])
    # and it still takes new photos
    code, _, err = run_cli(capsys, "add", moved / "index", _new_photo(tmp_path), "--workers", 0)
    assert code == 0, err


def _new_photo(folder: Path) -> Path:
    from PIL import Image

    path = folder / "new_item.jpg"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(path)
    return path


def test_image_root_and_checkpoint_overrides(capsys, shop_index, shop, tiny_checkpoint, tmp_path):
    index_only = tmp_path / "index_only"
    shutil.copytree(shop_index, index_only)
    shutil.rmtree(index_only / "model")  # no carried model: the recorded path is used, or --checkpoint
    photos_now = tmp_path / "photos_now"
    shutil.copytree(shop, photos_now)
    photo = sorted(photos_now.rglob("*.jpg"))[0]
    code, out, err = run_cli(capsys, "query", index_only, photo, "-k", 1, "--json", "--image-root", photos_now,
                             "--checkpoint", tiny_checkpoint)
    assert code == 0, err
    assert json.loads(out)["results"][0]["image_path"] == str(photo)


def test_a_missing_model_is_a_clear_error(capsys, shop_index, tmp_path):
    index_only = tmp_path / "index_only"
    shutil.copytree(shop_index, index_only)
    shutil.rmtree(index_only / "model")
    manifest = json.loads((index_only / "manifest.json").read_text())
    manifest["extra"]["checkpoint"] = str(tmp_path / "gone.pt")
    manifest["extra"]["checkpoint_from_index"] = "../gone.pt"
    (index_only / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(capsys, "query", index_only, __file__, "-k", 1)
    assert code == 2 and "is not at" in err and "--checkpoint" in err


def test_batch_query_writes_every_photo_and_reports_bad_ones(capsys, shop_index, shop, tmp_path):
    photos = sorted(shop.rglob("*.jpg"))[:3]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    listing = tmp_path / "list.txt"
    listing.write_text("# my queries\n" + "\n".join(str(p) for p in photos[1:]) + "\n\nbroken.jpg\n")
    for suffix in (".csv", ".jsonl"):
        out = tmp_path / f"results{suffix}"
        code, printed, err = run_cli(capsys, "query", shop_index, photos[0], listing, "-k", 2, "--out", out, "--no-progress")
        assert code == 0, err
        assert "3 photos queried" in printed and "photos/s" in printed
        assert "broken.jpg" in err and "skipped 1" in err
        if suffix == ".csv":
            with open(out) as f:
                rows = list(csv.DictReader(f))
        else:
            rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(rows) == 6 and {r["query"] for r in rows} == {str(p) for p in photos}
        first = [r for r in rows if r["query"] == str(photos[0])]
        assert int(first[0]["rank"]) == 1 and Path(first[0]["image_path"]).name == photos[0].name
    # without --out, several photos are answered in turn, each under its own headline
    code, printed, _ = run_cli(capsys, "query", shop_index, photos[0], photos[1], "-k", 2)
    assert code == 0 and f"query {photos[0]}" in printed and f"query {photos[1]}" in printed
    code, _, err = run_cli(capsys, "query", shop_index, photos[0], "--out", tmp_path / "results.txt")
    assert code == 2 and ".csv or .jsonl" in err


def test_explained_scores_add_up_and_name_the_branches(shop_index, shop):
    engine = SearchEngine.open(shop_index, device="cpu")
    result = engine.query(sorted(shop.rglob("*.jpg"))[0], k=4)
    explained = engine.explain(result.prediction, result.matches)
    # the trained model appends the pooled appearance (the training default), a fourth part
    total = explained[["score_global", "score_local", "score_bias", "score_appearance"]].sum(axis=1).to_numpy()
    np.testing.assert_allclose(total, explained["score"].to_numpy(), atol=2e-4)
    assert (explained["score_local"] != 0).any() and (explained["score_global"] != 0).any()
    assert (explained["score_appearance"] > 0).all()


def test_version_and_help_are_fast_and_load_no_torch():
    probe = ("import sys; from indexer.cli import main\n"
             "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
             "print('torch' in sys.modules, 'faiss' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.stdout.split()[:2] == ["indexer", "0.1.0"] or "indexer" in done.stdout
    assert done.stdout.strip().endswith("False False"), done.stdout


def test_item_results_list_each_item_once_at_its_best_view():
    """Per-item results: the k best items by their best image, found by searching deeper when the
    nearest images crowd into a few items; the same as a brute force over items."""
    import pandas as pd

    from indexer.search import ITEM_OVERFETCH, first_view_of_each_item

    rng = np.random.default_rng(3)
    query = rng.normal(size=16).astype(np.float32)
    query /= np.linalg.norm(query)
    # item "near" has 12 views right next to the query: more than ITEM_OVERFETCH x k images of one item
    near = query + 0.05 * rng.normal(size=(12, 16))
    others = rng.normal(size=(30, 16))
    vectors = np.concatenate([near, others]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = ["near"] * 12 + [f"other_{i // 3}" for i in range(27)] + [None, None, None]  # the last three: no item id
    index = EmbeddingIndex.create(16, device="cpu")
    index.add(vectors, pd.DataFrame({"item_id": pd.array(items, dtype="string")}))
    searched = []

    def nearest(n):
        searched.append(n)
        scores, ids = index.nearest(query[None, :], n)
        return scores[0], ids[0]

    def item_ids(ids):
        return index.metadata_of(ids)["item_id"].to_numpy(object)

    k = 3
    scores_got, ids_got = first_view_of_each_item(nearest, item_ids, k, len(index))
    got = pd.DataFrame({"id": ids_got, "score": scores_got, "item_id": item_ids(ids_got)})
    assert searched[0] == ITEM_OVERFETCH * k and len(searched) > 1  # the first 12 images were all "near"
    assert len(got) == k and got["item_id"].iloc[0] == "near"
    scores = vectors @ query
    best = {}
    for i, item in enumerate(items):
        key = item if item is not None else f"image:{i}"
        best[key] = max(best.get(key, -2.0), scores[i])
    expected = sorted(best, key=best.get, reverse=True)[:k]
    keys = [item if isinstance(item, str) else f"image:{i}" for item, i in zip(got["item_id"], got["id"])]
    assert keys == expected
    assert np.allclose(got["score"].to_numpy(), [best[key] for key in expected], atol=1e-5)
    # every item of the unannotated images counts alone; k above the number of items returns them all
    everything, _ = first_view_of_each_item(nearest, item_ids, 100, len(index))
    assert len(everything) == len(best) == 1 + 9 + 3
