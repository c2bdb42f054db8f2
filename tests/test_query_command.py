"""``indexer query`` as the page answers: many photos with one model load, predictions where the
gallery has no labels, the close-match flag; and ``indexer add`` reporting photos that do not look
like garment photos, or refusing them."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from fashionnet.inference.predictor import Predictor
from indexer.store import EmbeddingIndex
from tests.cli_helpers import run_cli


@pytest.fixture()
def count_model_loads(monkeypatch) -> list:
    loads = []
    real = Predictor.from_checkpoint.__func__

    def counted(cls, *args, **kwargs):
        loads.append(args[0] if args else kwargs.get("path"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(Predictor, "from_checkpoint", classmethod(counted))
    return loads


def test_several_photos_are_answered_in_turn_with_one_model_load(capsys, trust_index, count_model_loads):
    gallery = EmbeddingIndex.load(trust_index).metadata
    photos = gallery["image_path"].iloc[[0, 3, 5]].tolist()
    code, out, err = run_cli(capsys, "query", trust_index, *photos, "-k", 2, "--device", "cpu")
    assert code == 0, err
    assert len(count_model_loads) == 1
    assert "loading the model" in err and err.index("loading the model") < err.index("ready in")
    heads = [line for line in out.splitlines() if line.startswith("query ")]
    assert [h.split(":")[0] for h in heads] == [f"query {p}" for p in photos]
    assert out.count("close match: best score") == 3  # each photo is in the gallery: its own image, score 1

    code, out, _ = run_cli(capsys, "query", trust_index, *photos, "-k", 2, "--json", "--device", "cpu")
    answers = json.loads(out)
    assert [a["query"] for a in answers] == photos and len(count_model_loads) == 2
    for answer, photo in zip(answers, photos):
        assert answer["results"][0]["image_path"] == photo and answer["match"] is True
        assert [r["match"] for r in answer["results"]] == [r["score"] >= answer["close_match_score"] for r in answer["results"]]


def test_predictions_are_shown_where_the_gallery_has_no_labels(capsys, tiny_checkpoint, synth_root, tmp_path):
    shop = tmp_path / "shop"
    originals = sorted((synth_root / "consumer2shop" / "img").rglob("shop_*.jpg"))[:6]
    for i, photo in enumerate(originals):
        (shop / f"sku{i}").mkdir(parents=True)
        shutil.copy(photo, shop / f"sku{i}" / "front.jpg")
    index = tmp_path / "idx"
    code, _, err = run_cli(capsys, "build", "--checkpoint", tiny_checkpoint, "--images", shop, "--out", index, "--workers", 0,
                           "--no-progress", "--device", "cpu")
    assert code == 0, err
    gallery = EmbeddingIndex.load(index).metadata
    assert gallery["category"].isna().all() and gallery["clothes_type"].isna().all()  # no labels: a shop's plain photos

    code, out, _ = run_cli(capsys, "query", index, originals[0], "-k", 6, "--device", "cpu")
    assert code == 0 and "None" not in out and "<NA>" not in out and "NaN" not in out
    predicted = {row.item_id: row.predicted_category for row in gallery.itertuples()}
    table = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(table) == 6
    header = next(line.split() for line in out.splitlines() if line.split()[:2] == ["rank", "score"])
    shown = {cells[header.index("item_id")]: cells[header.index("category")] for cells in table}
    assert shown == {item: predicted[item] for item in shown}

    code, out, _ = run_cli(capsys, "query", index, originals[0], "-k", 6, "--json", "--device", "cpu")
    results = json.loads(out)["results"]
    assert all(r["category"] == predicted[r["item_id"]] and r["clothes_type"] in (1, 2, 3) for r in results)


def test_add_reports_a_photo_unlike_a_garment_and_can_refuse_it(capsys, trust_index, trust_checkpoint, plain_photo, synth_root, tmp_path):
    index = tmp_path / "idx"
    shutil.copytree(trust_index, index)
    garment = sorted((synth_root / "consumer2shop" / "img").rglob("comsumer_*.jpg"))[0]
    new = tmp_path / "new"
    new.mkdir()
    shutil.copy(garment, new / "garment.jpg")
    shutil.copy(plain_photo, new / "wall.png")
    before = len(EmbeddingIndex.load(index))

    code, out, err = run_cli(capsys, "add", index, new, "--reject-unfamiliar", "--workers", 0, "--no-progress", "--device", "cpu")
    assert code == 0, err
    assert "wall.png" in err and "refused" in err and "does not look like a garment photo" in err and "garment.jpg" not in err
    rows = EmbeddingIndex.load(index).metadata
    assert len(rows) == before + 1 and rows["image_path"].str.endswith("garment.jpg").sum() == 1
    assert not rows["image_path"].str.endswith("wall.png").any()

    code, out, err = run_cli(capsys, "add", index, new / "wall.png", "--workers", 0, "--no-progress", "--device", "cpu")
    assert code == 0, err
    assert "wall.png" in err and "flagged" in err and "1 flagged" in out
    rows = EmbeddingIndex.load(index).metadata
    stored = rows[rows["image_path"].str.endswith("wall.png")]
    assert len(stored) == 1 and stored["unfamiliar"].iloc[0] == True  # noqa: E712 (a pandas boolean)
    assert rows.loc[rows["image_path"].str.endswith("garment.jpg"), "unfamiliar"].iloc[0] == False  # noqa: E712

    # a search with the wall photo finds it, flagged, unless flagged rows are left out
    code, out, _ = run_cli(capsys, "query", index, new / "wall.png", "-k", 3, "--json", "--device", "cpu")
    answer = json.loads(out)
    assert answer["unfamiliar"] is True and answer["match"] is False and answer["results"][0]["image_path"].endswith("wall.png")
    code, out, _ = run_cli(capsys, "query", index, new / "wall.png", "-k", 3, "--json", "--exclude-unfamiliar", "--device", "cpu")
    assert not any(r["image_path"].endswith("wall.png") for r in json.loads(out)["results"])
    assert pd.notna(rows["unfamiliarity"]).all()
