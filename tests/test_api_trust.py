"""The HTTP API says how far to trust what it does, against a real uvicorn server: each search
result's close-match flag and the query's own unfamiliar flag, adds that report (or refuse) photos
that do not look like garment photos, and searches that leave flagged gallery photos out."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests

from indexer.store import EmbeddingIndex
from tests.test_api import REQUEST_TIMEOUT, add, assert_error, search, serving


@pytest.fixture()
def trust_server(trust_index, tmp_path):
    index_dir = tmp_path / "idx"
    shutil.copytree(trust_index, index_dir)
    with serving(index_dir, tmp_path / "server.log") as url:
        yield url, index_dir


def _add(url: str, photos, item_id: str, **fields) -> requests.Response:
    files = [("images", (path.name, path.read_bytes(), "application/octet-stream")) for path in photos]
    return requests.post(f"{url}/items", files=files, data={"item_id": item_id, **fields}, timeout=REQUEST_TIMEOUT)


def test_adds_report_flag_or_refuse_a_photo_unlike_a_garment_and_searches_can_leave_it_out(trust_server, plain_photo, synth_root):
    url, index_dir = trust_server
    garment = sorted((synth_root / "consumer2shop" / "img").rglob("comsumer_*.jpg"))[0]
    before = len(EmbeddingIndex.load(index_dir))

    refused = _add(url, [plain_photo], "wall", reject_unfamiliar="true")
    error = assert_error(refused, 422, "unfamiliar_image")
    assert "plain_wall.png" in error["message"] and "does not look like a garment photo" in error["message"]
    assert len(EmbeddingIndex.load(index_dir)) == before

    mixed = _add(url, [garment, plain_photo], "mixed", reject_unfamiliar="true")  # the garment is added, the wall named
    assert mixed.status_code == 200, mixed.text
    body = mixed.json()
    assert body["added"] == 1 and [s["file"] for s in body["skipped"]] == ["plain_wall.png"] and body["flagged"] == []
    assert body["images"][0]["unfamiliar"] is False

    accepted = _add(url, [plain_photo], "wall")  # nothing is refused by default: added, and said to be flagged
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["added"] == 1 and body["flagged"] == ["plain_wall.png"] and body["images"][0]["unfamiliar"] is True
    stored = requests.get(f"{url}/items/wall", timeout=REQUEST_TIMEOUT).json()["images"]
    assert [image["unfamiliar"] for image in stored] == [True]
    rows = EmbeddingIndex.load(index_dir).metadata
    assert rows.loc[rows["item_id"] == "wall", "unfamiliar"].tolist() == [True]

    # the wall photo finds itself first; the answer says the query is flagged and nothing is a close match
    answer = search(url, plain_photo, k=3).json()
    assert answer["unfamiliar"] is True and answer["prediction"]["unfamiliar"] is True
    assert answer["results"][0]["item_id"] == "wall" and answer["match"] is False
    assert [r["match"] for r in answer["results"]] == [False] * len(answer["results"])
    left_out = search(url, plain_photo, k=3, exclude_unfamiliar="true").json()
    assert "wall" not in [r["item_id"] for r in left_out["results"]] and left_out["query"]["exclude_unfamiliar"] is True


def test_results_say_whether_they_are_close_matches(trust_server):
    url, index_dir = trust_server
    gallery = EmbeddingIndex.load(index_dir).metadata
    photo = gallery["image_path"].iloc[0]
    answer = search(url, Path(photo), k=4).json()
    threshold = answer["close_match_score"]
    assert threshold is not None and answer["unfamiliar"] is False
    assert answer["results"][0]["score"] == pytest.approx(1.0, abs=1e-4) and answer["match"] is True
    assert [r["match"] for r in answer["results"]] == [r["score"] >= threshold for r in answer["results"]]


def test_a_server_started_with_reject_unfamiliar_refuses_without_being_asked(trust_index, plain_photo, tmp_path):
    index_dir = tmp_path / "idx"
    shutil.copytree(trust_index, index_dir)
    with serving(index_dir, tmp_path / "server.log", "--reject-unfamiliar") as url:
        error = assert_error(add(url, [(plain_photo.name, plain_photo.read_bytes())], item_id="wall"), 422, "unfamiliar_image")
        assert plain_photo.name in error["message"]
