"""``indexer serve``: the HTTP API, tested against a real uvicorn server on a loopback port."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import torch

from indexer.cli import main as indexer
from indexer.search import SearchEngine
from indexer.store import EmbeddingIndex
from tests.cli_helpers import free_port, stop

REPO = Path(__file__).resolve().parents[1]
REQUEST_TIMEOUT = 30

# what `indexer serve` runs, built from the parser and command that indexer/api.py provides
LAUNCHER = """
import argparse, sys
from indexer.api import add_serve_parser, cmd_serve
parser = argparse.ArgumentParser(prog="indexer")
add_serve_parser(parser.add_subparsers(dest="command", required=True))
sys.exit(cmd_serve(parser.parse_args(sys.argv[1:])))
"""


SERVERS: dict[str, subprocess.Popen] = {}  # base URL -> the server process, for tests that watch it


@contextlib.contextmanager
def serving(index_dir: Path, log_path: Path, *options: str, start_timeout: float = 120):
    """Run `indexer serve` in a subprocess on a free loopback port; yields its base URL."""
    port = free_port()
    env = {**os.environ, "FASHIONNET_THREADS": "1", "PYTHONPATH": str(REPO)}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, "serve", str(index_dir), "--host", "127.0.0.1", "--port", str(port),
                                 "--device", "cpu", "--log-level", "warning", *options], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    SERVERS[url] = proc
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer within {start_timeout} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        stop(proc)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]


def search(url: str, photo: Path, **fields) -> requests.Response:
    with open(photo, "rb") as f:
        return requests.post(f"{url}/search", files={"image": (photo.name, f, "image/jpeg")}, data=fields, timeout=REQUEST_TIMEOUT)


def add(url: str, photos: list[tuple[str, bytes]], item_id: str | None = None) -> requests.Response:
    data = {"item_id": item_id} if item_id is not None else {}
    return requests.post(f"{url}/items", files=[("images", (name, body, "application/octet-stream")) for name, body in photos],
                         data=data, timeout=REQUEST_TIMEOUT)


def assert_error(response: requests.Response, status: int, code: str | None = None) -> dict:
    """A JSON error of the documented shape, never a traceback."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    assert body["error"]["message"] and "Traceback" not in response.text
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def count(url: str) -> int:
    response = requests.get(f"{url}/health", timeout=REQUEST_TIMEOUT)
    assert response.status_code == 200 and response.json()["status"] == "ok"
    return response.json()["count"]


def consumer_photos(synth_root: Path) -> list[Path]:
    """Customer photos: real pictures of the synthetic items that the shop gallery does not hold."""
    return sorted((synth_root / "consumer2shop" / "img").rglob("comsumer_*.jpg"))


@pytest.fixture(scope="module")
def read_only(tiny_index, tmp_path_factory):
    """One server for the tests that change nothing, and the copy of the index it serves."""
    index_dir = tmp_path_factory.mktemp("api_read") / "idx"
    shutil.copytree(tiny_index, index_dir)
    with serving(index_dir, index_dir.parent / "server.log") as url:
        yield url, index_dir


@pytest.fixture(scope="module")
def engine(read_only):
    """The same index opened in this process, to compare the server's answers with."""
    threads = torch.get_num_threads()
    yield SearchEngine.open(read_only[1], device="cpu")
    torch.set_num_threads(threads)  # SearchEngine.open sets serving threads for the whole process


@pytest.fixture()
def writable(tiny_index, tmp_path):
    index_dir = tmp_path / "idx"
    shutil.copytree(tiny_index, index_dir)
    with serving(index_dir, tmp_path / "server.log") as url:
        yield url, index_dir


# ----------------------------------------------------------------------------- searching

def test_search_returns_the_gallery_photo_first_and_the_same_top_k_as_the_engine_and_the_cli(read_only, engine, capsys):
    url, index_dir = read_only
    gallery = engine.index.metadata
    for image_id in gallery.index[[0, len(gallery) // 2]]:
        photo = Path(gallery.loc[image_id, "image_path"])
        response = search(url, photo, k=7)
        assert response.status_code == 200, response.text
        body = response.json()
        results = body["results"]
        assert [r["rank"] for r in results] == list(range(1, 8))
        assert results[0]["id"] == int(image_id) and results[0]["image_path"] == gallery.loc[image_id, "image_relpath"]
        assert not Path(results[0]["image_path"]).is_absolute()
        assert results[0]["item_id"] == gallery.loc[image_id, "item_id"] and results[0]["image_url"] == f"/images/{image_id}"

        expected = engine.query(photo, k=7)
        assert [r["id"] for r in results] == expected.matches["id"].tolist()
        assert [r["score"] for r in results] == pytest.approx(expected.matches["score"].tolist(), abs=1e-5)
        assert indexer(["query", str(index_dir), str(photo), "-k", "7", "--json", "--device", "cpu"]) == 0
        cli = json.loads(capsys.readouterr().out)["results"]
        assert [r["id"] for r in results] == [int(i) for i in expected.matches["id"]]
        assert [engine.image_file(r["id"]) for r in results] == [Path(r["image_path"]) for r in cli]
        assert [r["score"] for r in results] == pytest.approx([r["score"] for r in cli], abs=1e-5)

        prediction, own = body["prediction"], expected.prediction
        assert prediction["category"] == own.category and prediction["category_prob"] == pytest.approx(own.category_prob, abs=1e-4)
        assert [lm["name"] for lm in prediction["landmarks"]] == [lm.name for lm in own.landmarks]
        for got, want in zip(prediction["landmarks"], own.landmarks):
            assert got["x"] == pytest.approx(want.x, abs=0.05) and got["y"] == pytest.approx(want.y, abs=0.05)
            assert got["visible_prob"] == pytest.approx(want.visible_prob, abs=1e-4)
            assert got["confidence"] == pytest.approx(want.confidence, abs=1e-4) and got["low_confidence"] == want.low_confidence
        assert [a["name"] for a in prediction["attributes"]] == [name for name, _ in own.attributes]
        assert {"unfamiliar", "unfamiliarity"} <= set(prediction)


def test_filters_restrict_the_results_as_the_engine_does(read_only, engine):
    url, _ = read_only
    choices = requests.get(f"{url}/info", timeout=REQUEST_TIMEOUT).json()["filters"]
    assert choices == engine.filter_choices()
    photo = Path(engine.index.metadata["image_path"].iloc[0])
    for clothes_type in choices["clothes_type"]:
        results = search(url, photo, k=10, clothes_type=clothes_type).json()["results"]
        assert results and {r["clothes_type"] for r in results} == {clothes_type}
        assert [r["id"] for r in results] == engine.query(photo, k=10, clothes_type=clothes_type).matches["id"].tolist()
    category = choices["category"][-1]
    results = search(url, photo, k=10, category=category).json()["results"]
    assert results and {r["category"] for r in results} == {category}
    assert [r["id"] for r in results] == engine.query(photo, k=10, category=category).matches["id"].tolist()
    if len(choices["attributes"]) >= 2:
        two = choices["attributes"][:2]
        repeated = search(url, photo, k=10, attributes=two).json()["results"]
        comma = search(url, photo, k=10, attributes=",".join(two)).json()["results"]
        assert [r["id"] for r in repeated] == [r["id"] for r in comma]
        assert [r["id"] for r in repeated] == engine.query(photo, k=10, attributes=two).matches["id"].tolist()
    unfiltered = search(url, photo, k=1000).json()["results"]
    assert len(unfiltered) == len(engine.index.metadata) and len({r["clothes_type"] for r in unfiltered}) > 1


def test_bad_search_inputs_get_clear_json_errors(read_only, synth_root, tmp_path):
    url, _ = read_only
    text = tmp_path / "notes.jpg"
    text.write_text("these are not pixels")
    error = assert_error(search(url, text), 422, "invalid_image")
    assert "notes.jpg" in error["message"] and "not an image" in error["message"]
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert "empty" in assert_error(search(url, empty), 422, "invalid_image")["message"]

    photo = consumer_photos(synth_root)[0]
    for k in (0, 1001, "many"):
        assert "k" in assert_error(search(url, photo, k=k), 422, "invalid_request")["message"]
    assert "clothes_type" in assert_error(search(url, photo, clothes_type=4), 422, "invalid_request")["message"]
    assert "image" in assert_error(requests.post(f"{url}/search", data={"k": 3}, timeout=REQUEST_TIMEOUT), 422)["message"]
    assert "IVF" in assert_error(search(url, photo, nprobe=4), 422, "invalid_request")["message"]  # the tiny index is flat
    assert search(url, photo, k=1000).status_code == 200  # the largest k allowed


def test_bodies_over_the_upload_limit_are_refused_with_413(read_only):
    url, _ = read_only
    too_big = os.urandom(21 * 1024 * 1024)  # the default limit is 20 MiB
    error = assert_error(requests.post(f"{url}/search", files={"image": ("big.jpg", too_big)}, timeout=REQUEST_TIMEOUT), 413, "too_large")
    assert "20 MiB" in error["message"]

    def chunks():  # no Content-Length: the server counts what arrives
        for start in range(0, len(too_big), 1 << 20):
            yield too_big[start:start + (1 << 20)]

    assert_error(requests.post(f"{url}/items", data=chunks(), headers={"Content-Type": "multipart/form-data; boundary=x"},
                               timeout=REQUEST_TIMEOUT), 413, "too_large")
    assert count(url) > 0  # still serving


def test_unknown_items_images_and_routes_are_404_json(read_only, engine):
    url, _ = read_only
    assert_error(requests.get(f"{url}/items/no-such-item", timeout=REQUEST_TIMEOUT), 404, "unknown_item")
    assert_error(requests.delete(f"{url}/items/no-such-item", timeout=REQUEST_TIMEOUT), 404, "unknown_item")
    unused = int(engine.index.metadata.index.max()) + 1000
    assert_error(requests.get(f"{url}/images/{unused}", timeout=REQUEST_TIMEOUT), 404, "unknown_image")
    assert_error(requests.get(f"{url}/images/-1", timeout=REQUEST_TIMEOUT), 404)
    assert_error(requests.get(f"{url}/images/abc", timeout=REQUEST_TIMEOUT), 422, "invalid_request")
    assert_error(requests.get(f"{url}/no/such/page", timeout=REQUEST_TIMEOUT), 404, "not_found")
    assert_error(requests.put(f"{url}/search", timeout=REQUEST_TIMEOUT), 405)


def test_items_images_health_info_and_docs(read_only, engine):
    url, _ = read_only
    gallery = engine.index.metadata
    item_id = gallery["item_id"].iloc[0]
    body = requests.get(f"{url}/items/{item_id}", timeout=REQUEST_TIMEOUT).json()
    own = gallery[gallery["item_id"] == item_id]
    assert body["item_id"] == item_id and body["count"] == len(own)
    assert sorted(image["id"] for image in body["images"]) == sorted(own.index.tolist())
    for image in body["images"]:
        served = requests.get(f"{url}{image['image_url']}", timeout=REQUEST_TIMEOUT)
        assert served.status_code == 200 and served.headers["content-type"].startswith("image/")
        assert served.content == Path(gallery.loc[image["id"], "image_path"]).read_bytes()
        assert image["image_path"] == gallery.loc[image["id"], "image_relpath"]

    assert count(url) == len(gallery)
    info = requests.get(f"{url}/info", timeout=REQUEST_TIMEOUT).json()
    assert info["index"]["count"] == len(gallery)
    assert info["model"]["checksum"] == engine.predictor.model_checksum == info["index"]["model_checksum"]
    assert info["model"]["backbone"] == engine.predictor.config.backbone
    docs = requests.get(f"{url}/docs", timeout=REQUEST_TIMEOUT)
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    paths = requests.get(f"{url}/openapi.json", timeout=REQUEST_TIMEOUT).json()["paths"]
    assert {"/search", "/items", "/items/{item_id}", "/images/{image_id}", "/health", "/info"} <= set(paths)
    assert {"post"} <= set(paths["/search"]) and {"get", "delete"} <= set(paths["/items/{item_id}"])


# ----------------------------------------------------------------------------- changing the gallery

def test_add_find_refuse_the_duplicate_and_delete(writable, synth_root):
    url, index_dir = writable
    before = count(url)
    new, other, third = consumer_photos(synth_root)[:3]
    response = add(url, [(new.name, new.read_bytes())], item_id="sku-1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["added"] == 1 and body["count"] == before + 1 == count(url) and body["duplicates"] == body["skipped"] == []
    assert body["images"][0]["image_path"].startswith("uploads/")  # relative to the index, not the server's path
    stored = index_dir / body["images"][0]["image_path"]
    assert stored.is_file() and stored.read_bytes() == new.read_bytes()
    assert EmbeddingIndex.load(index_dir).ntotal == before + 1  # saved, not only in the server's memory

    first = search(url, new, k=3).json()["results"][0]
    assert first["id"] == body["images"][0]["id"] and first["item_id"] == "sku-1" and first["score"] == pytest.approx(1.0, abs=1e-4)
    item = requests.get(f"{url}/items/sku-1", timeout=REQUEST_TIMEOUT).json()
    assert [image["id"] for image in item["images"]] == [first["id"]]

    files_before = sorted(p for p in (index_dir / "uploads").rglob("*") if p.is_file())
    error = assert_error(add(url, [("again.jpg", new.read_bytes())], item_id="sku-2"), 409, "duplicate")
    assert "again.jpg" in error["message"] and "already in the index" in error["message"]
    assert count(url) == before + 1 and EmbeddingIndex.load(index_dir).ntotal == before + 1
    assert sorted(p for p in (index_dir / "uploads").rglob("*") if p.is_file()) == files_before
    assert_error(requests.get(f"{url}/items/sku-2", timeout=REQUEST_TIMEOUT), 404)

    error = assert_error(add(url, [("broken.jpg", b"GIF89a not really")], item_id="sku-3"), 422, "invalid_image")
    assert "broken.jpg" in error["message"]
    assert_error(add(url, [(other.name, other.read_bytes())], item_id="../escape"), 422, "invalid_item_id")
    assert count(url) == before + 1

    removed = requests.delete(f"{url}/items/sku-1", timeout=REQUEST_TIMEOUT)
    assert removed.status_code == 200 and removed.json()["removed"] == 1 and removed.json()["count"] == before == count(url)
    assert EmbeddingIndex.load(index_dir).ntotal == before and not stored.exists()
    assert_error(requests.get(f"{url}/items/sku-1", timeout=REQUEST_TIMEOUT), 404)
    assert_error(requests.delete(f"{url}/items/sku-1", timeout=REQUEST_TIMEOUT), 404)
    assert search(url, new, k=1).json()["results"][0]["item_id"] != "sku-1"

    # several photos of one item at once; client file names that try to leave the folder
    response = add(url, [("../../../evil.jpg", other.read_bytes()), ("..\\..\\evil.jpg", third.read_bytes())], item_id="sku-4")
    assert response.status_code == 200, response.text
    paths = [index_dir / image["image_path"] for image in response.json()["images"]]
    assert len(paths) == 2 and len(set(paths)) == 2 and count(url) == before + 2
    for path in paths:
        assert path.resolve().is_relative_to((index_dir / "uploads").resolve()) and ".." not in path.parts and path.parent.name == "sku-4"
    uploads = (index_dir / "uploads").resolve()
    assert [p for p in index_dir.parent.rglob("*evil*") if not p.resolve().is_relative_to(uploads)] == []


def test_concurrent_searches_adds_and_removes(writable, synth_root):
    url, index_dir = writable
    gallery = EmbeddingIndex.load(index_dir).metadata
    before = count(url)
    new_photos = consumer_photos(synth_root)[:4]
    doomed = gallery["item_id"].drop_duplicates().tolist()[-2:]
    doomed_images = int(gallery["item_id"].isin(doomed).sum())
    kept = gallery.loc[~gallery["item_id"].isin(doomed)].iloc[:8]
    queries = [Path(p) for p in kept["image_path"]]
    relpaths = dict(zip(queries, kept["image_relpath"]))
    a_type = int(gallery["clothes_type"].iloc[0])
    failures: list[str] = []
    lock = threading.Lock()

    def check(response: requests.Response, what: str) -> None:
        if response.status_code != 200:
            with lock:
                failures.append(f"{what}: {response.status_code} {response.text[:300]}")

    def client(c: int) -> None:
        for i in range(4):
            photo = queries[(c + i) % len(queries)]
            response = search(url, photo, k=5, **({"clothes_type": a_type} if i % 2 else {}))
            check(response, f"search {photo.name}")
            if response.status_code == 200 and not i % 2 and response.json()["results"][0]["image_path"] != relpaths[photo]:
                with lock:  # the photo is never removed, so it stays its own best match
                    failures.append(f"search {photo}: first result {response.json()['results'][0]}")

    def adder() -> None:
        for n, photo in enumerate(new_photos):
            check(add(url, [(photo.name, photo.read_bytes())], item_id=f"new-{n}"), f"add {photo.name}")

    def remover() -> None:
        for item in doomed:
            check(requests.delete(f"{url}/items/{item}", timeout=REQUEST_TIMEOUT), f"remove {item}")

    assert len(queries) >= 2 and doomed_images > 0
    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)] + [threading.Thread(target=adder), threading.Thread(target=remover)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    expected = before + len(new_photos) - doomed_images
    assert count(url) == expected == EmbeddingIndex.load(index_dir).ntotal
    for n in range(len(new_photos)):
        assert requests.get(f"{url}/items/new-{n}", timeout=REQUEST_TIMEOUT).json()["count"] == 1


def portrait_variants(folder: Path) -> list[Path]:
    """A real photo of a person in a jacket (matplotlib's sample of Grace Hopper), mirrored, cropped
    and rescaled: worn photos whose searches reach the face check."""
    cbook = pytest.importorskip("matplotlib.cbook")
    from PIL import Image, ImageOps

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        portrait = Image.open(f).convert("RGB")
    w, h = portrait.size
    folder.mkdir(parents=True, exist_ok=True)
    variants = [portrait, ImageOps.mirror(portrait), portrait.resize((w // 2, h // 2)), portrait.crop((0, 0, w, h * 3 // 4)),
                portrait.crop((w // 8, 0, w * 7 // 8, h)), ImageOps.expand(portrait, border=60, fill=(235, 235, 235))]
    paths = []
    for n, variant in enumerate(variants):
        variant.save(folder / f"portrait_{n}.jpg", quality=92)
        paths.append(folder / f"portrait_{n}.jpg")
    return paths


def test_concurrent_searches_of_worn_photos_answer_as_each_one_alone(writable, synth_root, tmp_path):
    """8 clients searching with worn photos (consumer photos, a real portrait) while items are added
    and removed: no error, and every prediction exactly what the same photo gets alone."""
    url, index_dir = writable
    gallery = EmbeddingIndex.load(index_dir).metadata
    before = count(url)
    consumers = consumer_photos(synth_root)
    new_photos, worn = consumers[:2], consumers[2:8] + portrait_variants(tmp_path / "portraits")
    doomed = gallery["item_id"].drop_duplicates().tolist()[-1]
    doomed_images = int((gallery["item_id"] == doomed).sum())

    def seen(response: requests.Response) -> dict:
        p = response.json()["prediction"]
        return {"box": p["garment_box"], "below_face": p["below_face"], "cropped": p["cropped"], "category": p["category"],
                "landmarks": [(lm["name"], lm["x"], lm["y"], lm["visibility"]) for lm in p["landmarks"]]}

    alone = {}
    for photo in worn:
        response = search(url, photo, k=5)
        assert response.status_code == 200, response.text
        alone[photo] = seen(response)
    failures: list[str] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        session = requests.Session()
        for i in range(5):
            photo = worn[(c * 5 + i) % len(worn)]
            with open(photo, "rb") as f:
                response = session.post(f"{url}/search", files={"image": (photo.name, f)}, data={"k": 5}, timeout=REQUEST_TIMEOUT)
            problem = f"{response.status_code} {response.text[:300]}" if response.status_code != 200 else None
            if problem is None and seen(response) != alone[photo]:
                problem = f"answered {seen(response)}, alone {alone[photo]}"
            if problem:
                with lock:
                    failures.append(f"search {photo.name}: {problem}")

    def changes() -> None:
        for n, photo in enumerate(new_photos):
            response = add(url, [(photo.name, photo.read_bytes())], item_id=f"worn-{n}")
            if response.status_code != 200:
                failures.append(f"add {photo.name}: {response.status_code} {response.text[:300]}")
        response = requests.delete(f"{url}/items/{doomed}", timeout=REQUEST_TIMEOUT)
        if response.status_code != 200:
            failures.append(f"remove {doomed}: {response.status_code} {response.text[:300]}")

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)] + [threading.Thread(target=changes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert count(url) == before + len(new_photos) - doomed_images == EmbeddingIndex.load(index_dir).ntotal


def test_image_root_points_results_and_image_files_at_moved_photos(tiny_index, tmp_path):
    index_dir = tmp_path / "idx"
    shutil.copytree(tiny_index, index_dir)
    index = EmbeddingIndex.load(index_dir)
    moved = tmp_path / "moved"
    shutil.copytree(index.extra["image_root"], moved)
    first = index.metadata.iloc[0]
    copy = moved / first["image_relpath"]
    copy.write_bytes(copy.read_bytes() + b"\0")  # the moved file differs, so the test can tell which one is served
    with serving(index_dir, tmp_path / "server.log", "--image-root", str(moved)) as url:
        served = requests.get(f"{url}/images/{index.metadata.index[0]}", timeout=REQUEST_TIMEOUT)
        assert served.status_code == 200 and served.content == copy.read_bytes()
        results = search(url, copy, k=3).json()["results"]
        assert results[0]["id"] == int(index.metadata.index[0]) and moved / results[0]["image_path"] == copy
        item = requests.get(f"{url}/items/{first['item_id']}", timeout=REQUEST_TIMEOUT).json()
        assert all((moved / image["image_path"]).is_file() and str(tmp_path) not in image["image_path"] for image in item["images"])
