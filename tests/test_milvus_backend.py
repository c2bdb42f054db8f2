"""The Milvus backend against Milvus Lite: the same answers as FAISS, filters inside Milvus, the CLI
and the API on a Milvus index, safe concurrent and killed writes, a resumed build, a model that
does not fit, and a build spread over two processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

pytest.importorskip("milvus_lite", reason="Milvus Lite has no build for this platform, so the Milvus backend cannot run "
                                          "here (pip install 'fashionnet-search[milvus]' where it does)")

from fashionnet.inference.predictor import Predictor  # noqa: E402
from fashionnet.models.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from indexer import milvus_build, milvus_connection  # noqa: E402
from indexer.build import build_index, gallery_rows  # noqa: E402
from indexer.catalogue_metadata import update_item  # noqa: E402
from indexer.errors import IndexMismatchError, IndexSaveError  # noqa: E402
from indexer.milvus_collection import GalleryCollection  # noqa: E402
from indexer.milvus_store import MilvusIndex  # noqa: E402
from indexer.search import Filters, SearchEngine  # noqa: E402
from indexer.store import EmbeddingIndex  # noqa: E402
from indexer.updates import locked_update  # noqa: E402
from tests.cli_helpers import free_port, run_cli  # noqa: E402
from tests.test_api import consumer_photos, search, serving  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "FASHIONNET_THREADS": "1"}


def _lite(index_dir: Path) -> str:
    return str(index_dir / "milvus.db")


def _entities(index_dir: Path) -> list[dict]:
    """Every entity of the index's collection, whatever the manifest commits."""
    index = MilvusIndex.load(index_dir)
    with milvus_connection.session(index.uri):
        collection = GalleryCollection.open(milvus_connection.client(index.uri), index.collection_name, index.uri)
        return collection.client.query(index.collection_name, filter="pk >= 0", output_fields=["pk", "id", "image_path"], limit=16384)


@pytest.fixture(scope="module")
def milvus_index(tiny_checkpoint, synth_root, tmp_path_factory) -> Path:
    """The consumer2shop test gallery in a Milvus Lite collection, built as the FAISS tiny_index is."""
    out = tmp_path_factory.mktemp("milvus") / "gallery"
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch")
    build_index(predictor, gallery_rows(synth_root / "consumer2shop"), out, workers=0, progress=False,
                checkpoint_path=str(tiny_checkpoint), device="cpu", backend="milvus")
    return out


@pytest.fixture()
def milvus_copy(milvus_index, tmp_path) -> Path:
    """A copy a test may change; its Lite file comes along (the index records it relative to itself)."""
    milvus_connection.release(_lite(milvus_index))  # closed while copied
    dst = tmp_path / "idx"
    shutil.copytree(milvus_index, dst)
    return dst


# ------------------------------------------------------------------------------- the same answers


def test_milvus_answers_every_query_and_filter_as_faiss(tiny_index, milvus_index, synth_root):
    faiss_engine = SearchEngine.open(tiny_index, device="cpu", runtime="torch")
    milvus_engine = SearchEngine.open(milvus_index, device="cpu", runtime="torch")
    assert isinstance(milvus_engine.index, MilvusIndex) and isinstance(faiss_engine.index, EmbeddingIndex)
    gallery = faiss_engine.index.metadata
    assert len(milvus_engine.index) == len(gallery)
    assert sorted(milvus_engine.index.metadata["image_path"]) == sorted(gallery["image_path"])
    assert json.loads((milvus_index / "manifest.json").read_text())["milvus"]["uri"] == "milvus.db"  # relative: it travels
    attribute = next(a for text in gallery["predicted_attributes"].dropna() for a in text.split("|") if a)
    category = gallery["category"].dropna().iloc[0]
    settings = [None, Filters(clothes_type=1), Filters(clothes_type=2), Filters(category=category.upper()),
                Filters(attributes=(attribute,)), Filters(clothes_type=1, attributes=(attribute,)), Filters(familiar_only=True)]
    narrowed = 0
    for photo in consumer_photos(synth_root)[:6]:
        embedding = faiss_engine.predictor.predict(photo).embedding
        for filters in settings:
            for per_item in (True, False):
                want = faiss_engine.search_embedding(embedding, 10, filters, per_item=per_item)
                got = milvus_engine.search_embedding(embedding, 10, filters, per_item=per_item)
                assert list(got["image_path"]) == list(want["image_path"]), (photo.name, filters, per_item)
                np.testing.assert_allclose(got["score"], want["score"], atol=1e-5)
                assert list(got["item_id"]) == list(want["item_id"]) and list(got["rank"]) == list(want["rank"])
                narrowed += filters is not None and len(want) < 10
    assert narrowed, "no filter left out anything: the comparison says nothing about filters"


def test_filters_run_inside_milvus_as_expressions(milvus_index, synth_root, monkeypatch):
    engine = SearchEngine.open(milvus_index, device="cpu", runtime="torch")
    monkeypatch.setattr(SearchEngine, "allowed_ids", staticmethod(lambda *a: pytest.fail("ids picked outside Milvus")))
    seen = []
    search_in_milvus = GalleryCollection.search
    monkeypatch.setattr(GalleryCollection, "search", lambda self, q, limit, expr: seen.append(expr) or search_in_milvus(self, q, limit, expr))
    gallery = engine.index.metadata
    lower = int((gallery["clothes_type"] == 2).sum())
    result = engine.query(consumer_photos(synth_root)[0], k=lower, clothes_type="lower", per_item=False)
    assert len(result.matches) == lower and set(result.matches["clothes_type"]) == {2}  # all of them: filtered, not cut after
    assert any("clothes_type == 2" in expr for expr in seen), seen
    expression = engine.index.filter_expression(category='Te"es', attributes=["Floral"], familiar_only=True)
    assert expression == 'category == "te\\"es" and array_contains(attributes, "floral") and unfamiliar == false'


# ------------------------------------------------------------------------------ the commands


def test_cli_info_query_add_remove_on_a_milvus_index(capsys, milvus_copy, synth_root, tmp_path):
    code, out, _ = run_cli(capsys, "info", milvus_copy, "--json")
    info = json.loads(out)
    assert code == 0 and info["backend"] == "milvus" and info["milvus_collection"] == "gallery"
    n0 = info["count"]
    image = MilvusIndex.load(milvus_copy).metadata["image_path"].iloc[0]
    code, out, _ = run_cli(capsys, "query", milvus_copy, image, "-k", 3, "--json", "--device", "cpu", "--backend", "milvus")
    results = json.loads(out)["results"]
    assert code == 0 and results[0]["image_path"] == image and results[0]["score"] == pytest.approx(1.0, abs=1e-4)

    shop = tmp_path / "newshop" / "new_item_A"
    shop.mkdir(parents=True)
    for i, photo in enumerate(consumer_photos(synth_root)[:2]):
        shutil.copy(photo, shop / f"view_{i}.jpg")
    code, out, err = run_cli(capsys, "add", milvus_copy, tmp_path / "newshop", "--device", "cpu", "--workers", 0)
    assert code == 0 and f"now holds {n0 + 2}" in out, err
    code, _, err = run_cli(capsys, "add", milvus_copy, tmp_path / "newshop", "--device", "cpu", "--workers", 0)
    assert code == 1 and "already in the index" in err
    code, out, _ = run_cli(capsys, "query", milvus_copy, shop / "view_0.jpg", "-k", 1, "--json", "--device", "cpu")
    assert json.loads(out)["results"][0]["item_id"] == "new_item_A"
    code, out, _ = run_cli(capsys, "remove", milvus_copy, "--item", "new_item_A")
    assert code == 0 and f"now holds {n0}" in out
    assert len(_entities(milvus_copy)) == n0  # the removed entities are deleted, not only hidden

    code, _, err = run_cli(capsys, "info", milvus_copy, "--backend", "faiss")
    assert code == 2 and "keeps its vectors in milvus" in err
    code, _, err = run_cli(capsys, "info", milvus_copy, "--milvus-uri", tmp_path / "elsewhere.db")
    assert code == 0  # info reads the manifest; the collection is reached by a search
    code, _, err = run_cli(capsys, "query", milvus_copy, image, "--milvus-uri", tmp_path / "missing" / "x.db", "--device", "cpu")
    assert code == 2 and "x.db" in err and "does not exist" in err


def test_build_refuses_faiss_options_and_bad_names_before_any_work(capsys, tiny_checkpoint, synth_root, tmp_path):
    base = ["build", "--checkpoint", tiny_checkpoint, "--data-root", synth_root / "consumer2shop", "--out", tmp_path / "x"]
    for extra, said in ((["--backend", "milvus", "--index-factory", "IVF4,Flat"], "--index-factory"),
                        (["--backend", "milvus", "--milvus-uri", "gallery.sqlite"], "ends in .db"),
                        (["--backend", "milvus", "--milvus-collection", "9 lives"], "letters, digits and _"),
                        (["--milvus-uri", "a.db"], "need --backend milvus")):
        code, _, err = run_cli(capsys, *base, *extra)
        assert code == 2 and said in err, err
    assert not (tmp_path / "x").exists()


def test_update_item_changes_the_filter_fields_in_the_same_commit(milvus_copy, synth_root):
    engine = SearchEngine.open(milvus_copy, device="cpu", runtime="torch")
    gallery = engine.index.metadata
    item = gallery["item_id"].iloc[0]
    images = int((gallery["item_id"] == item).sum())
    assert update_item(milvus_copy, item, {"category": "Kimonos", "clothes_type": 3}) == images
    engine.refresh()
    photo = consumer_photos(synth_root)[0]
    found = engine.query(photo, k=50, category="kimonos", clothes_type=3, per_item=False).matches
    assert len(found) == images and set(found["item_id"]) == {item}
    assert len(_entities(milvus_copy)) == len(gallery)  # rewritten under new keys, the old ones deleted


# ---------------------------------------------------------------------------- safe changes

_ADDER = textwrap.dedent(
    """
    import sys
    import numpy as np, pandas as pd
    from indexer.updates import locked_update
    target, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for i in range(n):
        with locked_update(target) as index:
            index.add(np.random.default_rng(1000 * worker + i).normal(size=(1, index.dim)).astype(np.float32),
                      pd.DataFrame({"image_path": [f"/new/w{worker}-{i}.jpg"], "item_id": [f"w{worker}-{i}"]}))
    """
)


def test_concurrent_writers_lose_and_duplicate_nothing(milvus_copy):
    n0 = len(MilvusIndex.load(milvus_copy))
    workers = [subprocess.Popen([sys.executable, "-c", _ADDER, str(milvus_copy), str(w), "2"], env=ENV, stderr=subprocess.PIPE, text=True)
               for w in range(4)]
    for w in workers:
        assert w.wait(timeout=300) == 0, w.stderr.read()
    index = MilvusIndex.load(milvus_copy)
    added = sorted(index.metadata["item_id"][index.metadata["item_id"].str.startswith("w")])
    assert added == sorted(f"w{w}-{i}" for w in range(4) for i in range(2)) and len(index) == n0 + 8
    entities = _entities(milvus_copy)
    assert len(entities) == n0 + 8 and len({e["image_path"] for e in entities}) == len(entities)


_KILLED = textwrap.dedent(
    """
    import os, sys
    import numpy as np, pandas as pd, pymilvus
    from indexer import milvus_collection
    from indexer.updates import locked_update, remove_items
    target, change, kill_at = sys.argv[1], sys.argv[2], sys.argv[3]
    milvus_collection.WRITE_BATCH = 2  # so an item of 6 photos takes 3 writes
    calls = {"upsert": 0, "replace": 0, "delete": 0}

    def dies_at(owner, name):
        original = getattr(owner, name)
        def wrapped(*args, **kwargs):
            calls[name] += 1
            if name == kill_at.split(":")[0] and calls[name] == int(kill_at.split(":")[1]):
                os._exit(137)  # like kill -9: no cleanup
            return original(*args, **kwargs)
        setattr(owner, name, wrapped)

    dies_at(pymilvus.MilvusClient, "upsert"); dies_at(pymilvus.MilvusClient, "delete"); dies_at(os, "replace")
    if change == "add":
        with locked_update(target) as index:
            rows = pd.DataFrame({"image_path": [f"/new/{i}.jpg" for i in range(6)], "item_id": ["new_item"] * 6})
            index.add(np.random.default_rng(5).normal(size=(6, index.dim)).astype(np.float32), rows)
    else:
        remove_items(target, [change])
    """
)


@pytest.mark.parametrize("change, kill_at, lands", [("add", "upsert:2", False), ("add", "replace:1", False),
                                                    ("remove", "delete:2", True)])
def test_a_killed_change_leaves_the_old_or_the_new_index_never_part(milvus_copy, change, kill_at, lands):
    before = MilvusIndex.load(milvus_copy)
    item = before.metadata["item_id"].iloc[0]
    gone = int((before.metadata["item_id"] == item).sum())
    done = subprocess.run([sys.executable, "-c", _KILLED, str(milvus_copy), change if change == "add" else item, kill_at],
                          env=ENV, capture_output=True, text=True, timeout=180)
    assert done.returncode == 137, done.stderr[-2000:]
    after = MilvusIndex.load(milvus_copy)
    expected = len(before) - gone if lands else len(before)
    assert len(after) == expected and ("new_item" not in set(after.metadata["item_id"]))
    everything = before.export_vectors()[0] if change == "remove" else np.random.default_rng(5).normal(size=(6, before.dim))
    _, ids = after.nearest(everything.astype(np.float32), len(before) + 6)
    assert set(ids[ids >= 0].tolist()) <= set(after.ids.tolist())  # nothing uncommitted or retired is found
    assert len(_entities(milvus_copy)) >= expected
    with locked_update(milvus_copy) as index:  # the next writer deletes what the killed one left
        index.add(np.ones((1, index.dim), np.float32), pd.DataFrame({"image_path": ["/one.jpg"], "item_id": ["one"]}))
    assert len(_entities(milvus_copy)) == expected + 1 == len(MilvusIndex.load(milvus_copy))


def test_an_interrupted_build_resumes_with_what_it_wrote(tiny_checkpoint, synth_root, tmp_path, monkeypatch):
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch")
    catalogue = gallery_rows(synth_root / "consumer2shop")
    assert len(catalogue) > 4
    monkeypatch.setattr(milvus_build, "CHUNK_IMAGES", 2)
    embedded, stop_after = [], [4]
    embed = milvus_build.embed_images

    def counting(predictor, paths, **kwargs):
        if stop_after and len(embedded) >= stop_after[0]:
            raise KeyboardInterrupt  # the user's ^C in the middle of the build
        embedded.extend(paths)
        return embed(predictor, paths, **kwargs)

    monkeypatch.setattr(milvus_build, "embed_images", counting)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        build_index(predictor, catalogue, out, workers=0, progress=False, checkpoint_path=str(tiny_checkpoint), backend="milvus")
    assert not (out / "manifest.json").exists() and len(embedded) == 4
    stop_after.clear()
    report = build_index(predictor, catalogue, out, workers=0, progress=False, checkpoint_path=str(tiny_checkpoint), backend="milvus")
    assert report.resumed == 4 and len(embedded) == len(catalogue)  # each image embedded once over the two runs
    assert len(report.index) == len(catalogue) == len(_entities(out))
    assert sorted(report.index.metadata["image_path"]) == sorted(catalogue["image_path"])


# ------------------------------------------------------------------------------ the model


def test_a_model_that_does_not_fit_is_refused(milvus_copy, tiny_checkpoint, synth_root, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    other = tmp_path / "other.pt"
    state = {k: (v + 0.01 if v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    save_checkpoint(other, model_state=state, model_config=ckpt["model_config"], label_maps=ckpt["label_maps"],
                    preprocessing=ckpt["preprocessing"], epoch=0)
    with pytest.raises(IndexMismatchError, match="was built by model"):
        SearchEngine.open(milvus_copy, checkpoint=str(other), device="cpu", runtime="torch")
    # the collection alone: an index whose manifest names another model is refused by the collection's own record
    manifest = json.loads((milvus_copy / "manifest.json").read_text())
    (milvus_copy / "manifest.json").write_text(json.dumps({**manifest, "model_checksum": "0123456789abcdef"}))
    with pytest.raises(IndexMismatchError, match=r"collection 'gallery' at .*milvus\.db holds embeddings of model"):
        MilvusIndex.load(milvus_copy).connect()
    # a build of another model (here: one view per photo) into that collection
    one_view = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch", flip_average=False)
    with pytest.raises(IndexMismatchError, match="photos alone"):
        build_index(one_view, gallery_rows(synth_root / "consumer2shop"), tmp_path / "b", workers=0, progress=False,
                    backend="milvus", milvus_uri=_lite(milvus_copy), milvus_collection="gallery")
    # the same model, but another index's collection
    same = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", runtime="torch")
    with pytest.raises(IndexSaveError, match="belongs to another index"):
        build_index(same, gallery_rows(synth_root / "consumer2shop"), tmp_path / "c", workers=0, progress=False,
                    backend="milvus", milvus_uri=_lite(milvus_copy), milvus_collection="gallery")


# ----------------------------------------------------------------------- server, page, ranks


def test_serve_answers_as_the_cli_and_writes_through_milvus(capsys, milvus_copy, synth_root, tmp_path):
    photos = consumer_photos(synth_root)[:3]
    code, out, _ = run_cli(capsys, "query", milvus_copy, *photos, "-k", 10, "--json", "--device", "cpu")
    assert code == 0
    by_cli = {answer["query"]: [r["id"] for r in answer["results"]] for answer in json.loads(out)}
    milvus_connection.release(_lite(milvus_copy))  # Milvus Lite: one process at a time
    with serving(milvus_copy, tmp_path / "serve.log", "--backend", "milvus") as url:
        for photo in photos:
            answer = search(url, photo, k=10)
            assert answer.status_code == 200 and [r["id"] for r in answer.json()["results"]] == by_cli[str(photo)]
        n0 = requests.get(f"{url}/health", timeout=30).json()["count"]
        with open(photos[0], "rb") as f:
            added = requests.post(f"{url}/items", files=[("images", ("a.jpg", f.read(), "image/jpeg"))], data={"item_id": "api_item"},
                                  timeout=60)
        assert added.status_code == 200, added.text
        assert requests.get(f"{url}/health", timeout=30).json()["count"] == n0 + 1
        os.environ["FASHIONNET_MILVUS_WAIT_S"] = "1"
        try:  # while the server holds the Lite file, another process is told so
            code, _, err = run_cli(capsys, "query", milvus_copy, photos[0], "--device", "cpu")
        finally:
            del os.environ["FASHIONNET_MILVUS_WAIT_S"]
        assert code == 2 and "is open in another process" in err and "milvus.db" in err


@pytest.mark.parametrize("backend", ["milvus", "faiss"])
def test_torchrun_ranks_build_the_index_one_process_builds(backend, tiny_checkpoint, synth_root, tmp_path, milvus_index, tiny_index):
    out = tmp_path / "ranked"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
                          "-m", "indexer.cli", "build", "--checkpoint", str(tiny_checkpoint), "--data-root", str(synth_root / "consumer2shop"),
                          "--out", str(out), "--backend", backend, "--workers", "0", "--no-progress", "--device", "cpu", "--runtime", "torch"],
                         env={**ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("indexed ") == 1 and "2 processes" in run.stdout  # rank 0 reports
    alone = MilvusIndex.load(milvus_index) if backend == "milvus" else EmbeddingIndex.load(tiny_index)
    built = MilvusIndex.load(out) if backend == "milvus" else EmbeddingIndex.load(out)
    assert list(built.metadata["image_path"]) == list(alone.metadata["image_path"])
    vectors, _ = built.export_vectors()
    np.testing.assert_allclose(vectors, alone.export_vectors()[0], atol=1e-5)
    if backend == "milvus":
        entities = _entities(out)
        assert len(entities) == len(alone) and len({e["image_path"] for e in entities}) == len(alone)


def test_the_page_searches_a_milvus_index_from_its_own_record(milvus_copy, tiny_index, synth_root, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FASHIONNET_INDEX", str(milvus_copy))
    monkeypatch.setenv("FASHIONNET_DEVICE", "cpu")
    monkeypatch.setenv("FASHIONNET_RUNTIME", "torch")
    monkeypatch.setenv("FASHIONNET_EXAMPLES_DIR", str(synth_root / "consumer2shop"))
    st.cache_resource.clear()
    try:
        photo = consumer_photos(synth_root)[0]
        at = AppTest.from_file(str(REPO / "webui" / "app.py"), default_timeout=120)
        at.run()
        at.number_input(key="k").set_value(3)
        at.file_uploader(key="upload").set_value((photo.name, photo.read_bytes(), "image/jpeg"))
        at.run()
        assert not at.exception and not at.error, [e.message for e in at.exception] + [e.value for e in at.error]
        shown = [c.split(" ")[1] for image in at.image for c in image.captions if c.startswith("#")]
        expected = SearchEngine.open(tiny_index, device="cpu", runtime="torch").query(photo, k=3).matches["item_id"].tolist()
        assert shown == expected  # the FAISS index of the same gallery answers alike
    finally:
        st.cache_resource.clear()
