"""The query-by-photo page, driven headless with Streamlit's AppTest.

AppTest (streamlit 1.67) drives ``st.file_uploader`` directly: ``FileUploader.set_value((name,
bytes, mime))`` registers the bytes with the test runtime's upload manager, and the next ``run()``
hands the page an ``UploadedFile`` exactly as a browser upload would. The page is pointed at the
session fixtures (the tiny model's FAISS index of the synthetic consumer-to-shop test gallery)
through its environment variables. What the page shows is compared with what ``SearchEngine``
answers for the same photo. Visitors search the server's index: a box to choose another is there
only where the operator allows it, and messages name the index as the operator wrote it.
"""

from __future__ import annotations

import dataclasses
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from indexer.layout import live_data_file
from indexer.path_hiding import hide_server_paths
from indexer.search import Filters, SearchEngine
from webui.app import MAX_EXAMPLES, NO_CLOTHING_LANDMARK_PROB, no_clothing_found
from webui.settings import ALLOW_INDEX_CHOICE_ENV

APP = Path(__file__).resolve().parents[1] / "webui" / "app.py"
RESULT_CAPTION = re.compile(r"^#(\d+) (\S+) · score (-?\d+\.\d+)$")
TYPE_CAPTION = re.compile(r" · (upper|lower|full|\?)$")
K = 5
# The first run imports torch and loads the model; two shared cores can make that slow.
FIRST_RUN_TIMEOUT = 180
RUN_TIMEOUT = 60


@pytest.fixture(scope="module", autouse=True)
def _fresh_streamlit_caches():
    """The page caches the engine and thumbnails per process; start and leave this module clean."""
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture(autouse=True)
def _index_choice_not_allowed(monkeypatch):
    """The server's default, whatever the environment running the tests says."""
    monkeypatch.delenv(ALLOW_INDEX_CHOICE_ENV, raising=False)


@pytest.fixture(scope="module")
def consumer_root(synth_root) -> Path:
    return synth_root / "consumer2shop"


@pytest.fixture(scope="module")
def test_consumer_photos(consumer_root) -> list[Path]:
    """Consumer photos of the test split: the queries of the Consumer-to-shop protocol."""
    from fashionnet.data.readers import read_benchmark

    frame = read_benchmark(consumer_root, "consumer2shop", verify_images=False)
    rows = frame[(frame["split"] == "test") & (frame["source"] == "consumer")]
    return sorted({consumer_root / p for p in rows["image_path"]})


@pytest.fixture(scope="module")
def engine(tiny_index):
    from indexer.search import SearchEngine

    return SearchEngine.open(tiny_index, device="cpu")


@pytest.fixture
def page_env(monkeypatch, tiny_index, consumer_root):
    monkeypatch.setenv("FASHIONNET_INDEX", str(tiny_index))
    monkeypatch.setenv("FASHIONNET_EXAMPLES_DIR", str(consumer_root))
    monkeypatch.setenv("FASHIONNET_DEVICE", "cpu")


def open_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT)
    at.run(timeout=FIRST_RUN_TIMEOUT)
    assert not at.exception, [e.message for e in at.exception]
    return at


def result_captions(at: AppTest) -> list[tuple[int, str, float]]:
    """(rank, item id, score) of each result image, in page order."""
    found = []
    for image in at.image:
        for caption in image.captions:
            m = RESULT_CAPTION.match(caption)
            if m:
                found.append((int(m.group(1)), m.group(2), float(m.group(3))))
    return found


def images_captioned(at: AppTest, caption: str) -> int:
    return sum(caption in image.captions for image in at.image)


def test_upload_shows_landmarks_and_sorted_matches(page_env, test_consumer_photos, engine):
    photo = test_consumer_photos[0]
    k = min(K, engine.index.ntotal)
    at = open_page()
    at.number_input(key="k").set_value(k)
    at.file_uploader(key="upload").set_value((photo.name, photo.read_bytes(), "image/jpeg"))
    at.run()

    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert images_captioned(at, "Detected garment and landmarks") == 1
    legend = [c.value for c in at.caption if c.value.startswith("Legend: ")]
    assert len(legend) == 1 and "grey ring with ?: unsure" in legend[0] and "white frame: where the model thinks the garment is" in legend[0]
    shown = result_captions(at)
    assert [rank for rank, _, _ in shown] == list(range(1, k + 1))
    scores = [score for _, _, score in shown]
    assert scores == sorted(scores, reverse=True)

    # The page shows what the search engine answers for the same photo, in the same order.
    expected = engine.query(photo, k=k)
    assert [item for _, item, _ in shown] == expected.matches["item_id"].astype(str).tolist()
    np.testing.assert_allclose(scores, expected.matches["score"].to_numpy(float), atol=1.5e-3)
    category = expected.prediction.category
    shown_as = f"**Category:** {category} (" if expected.prediction.category_sure else f"most likely {category} ("
    assert any(shown_as in md.value for md in at.markdown)


def test_camera_photo_is_searched_like_an_upload(page_env, test_consumer_photos, engine):
    photo = test_consumer_photos[-1]
    k = min(K, engine.index.ntotal)
    at = open_page()
    at.radio(key="source").set_value("Take a photo")
    at.number_input(key="k").set_value(k)
    at.run()
    at.camera_input(key="camera").upload("camera.jpg", photo.read_bytes())
    at.run()

    assert not at.exception, [e.message for e in at.exception]
    assert images_captioned(at, "Detected garment and landmarks") == 1
    expected = engine.query(photo, k=k).matches["item_id"].astype(str).tolist()
    assert [item for _, item, _ in result_captions(at)] == expected


@pytest.mark.parametrize(
    "name, make_bytes, message",
    [
        ("half.jpg", lambda good: good[: len(good) // 2], "corrupt or truncated"),
        ("notes.jpg", lambda good: b"these are my shopping notes, not a photo\n" * 20, "not an image file"),
        ("empty.png", lambda good: b"", "empty"),
        ("notes.txt", lambda good: b"plain text", "jpg, png or webp"),
        ("huge.jpg", lambda good: good + b"\0" * (20 * 1024 * 1024), "too large"),
    ],
)
def test_bad_upload_shows_friendly_error(page_env, test_consumer_photos, name, make_bytes, message):
    at = open_page()
    at.file_uploader(key="upload").set_value((name, make_bytes(test_consumer_photos[0].read_bytes()), "image/jpeg"))
    at.run()

    assert not at.exception, [e.message for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and name in errors[0] and message in errors[0], errors
    assert result_captions(at) == [] and images_captioned(at, "Detected garment and landmarks") == 0


def test_example_photo_filter_and_item_detail(page_env, test_consumer_photos, engine):
    at = open_page()
    at.radio(key="source").set_value("Use an example")
    at.selectbox(key="clothes_type").set_value("lower")
    at.number_input(key="k").set_value(K)
    at.run()
    assert not at.exception, [e.message for e in at.exception]

    # Examples are the test-split consumer photos, one per item.
    example = at.selectbox(key="example")
    assert Path(example.value) in test_consumer_photos
    n_items = len({p.parent for p in test_consumer_photos})
    assert len(example.options) == min(MAX_EXAMPLES, n_items)

    # The clothes-type filter keeps lower-body results only.
    gallery = engine.index.metadata
    lower_count = int((gallery["clothes_type"] == 2).sum())
    shown = result_captions(at)
    assert len(shown) == min(K, lower_count)
    types = [TYPE_CAPTION.search(c.value).group(1) for c in at.caption if TYPE_CAPTION.search(c.value)]
    assert types == ["lower"] * len(shown)

    # The detail view shows every gallery image of the chosen item.
    item = at.selectbox(key="detail_item").value
    assert item == shown[0][1]
    n_item = int((gallery["item_id"].astype(str) == item).sum())
    detail = sum(1 for image in at.image for c in image.captions if c.startswith(f"{item} · "))
    assert detail == n_item >= 1


def _shown_text(at: AppTest) -> str:
    return "\n".join([e.value for e in at.error] + [c.value for c in at.code] + [m.value for m in at.markdown]
                     + [c.value for c in at.caption])


def test_missing_index_names_the_build_command(monkeypatch, tmp_path):
    # The operator's relative name is what visitors read, not the folder it is found in.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FASHIONNET_INDEX", "indexes/no_index_here")
    at = open_page()
    assert at.error[0].value.startswith("No search index at `indexes/no_index_here` yet")
    assert any("indexer build" in code.value and "make demo" in code.value and "--out indexes/no_index_here" in code.value
               for code in at.code)
    assert not at.file_uploader
    assert str(tmp_path) not in _shown_text(at)


def test_damaged_index_is_explained(monkeypatch, tmp_path, tiny_index):
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_index, damaged)
    blob = live_data_file(damaged, "index.faiss").read_bytes()
    live_data_file(damaged, "index.faiss").write_bytes(blob[: len(blob) // 2])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FASHIONNET_INDEX", "damaged")
    at = open_page()
    assert "The index at `damaged` is damaged" in at.error[0].value and "damaged/" in at.error[0].value
    assert "index.faiss" in at.error[0].value
    assert any("indexer build" in code.value for code in at.code)
    assert str(tmp_path) not in _shown_text(at)


def test_visitors_search_the_server_index_and_cannot_choose_another(page_env, engine):
    at = open_page()
    assert not at.text_input, "no box to type an index directory into"
    assert engine.describe() in [c.value for c in at.sidebar.caption]
    assert at.file_uploader and not at.error


def test_the_operator_can_let_visitors_choose_the_index(page_env, monkeypatch, tiny_index, engine, tmp_path):
    monkeypatch.setenv(ALLOW_INDEX_CHOICE_ENV, "1")
    at = open_page()
    box = at.text_input(key="index_dir")
    assert box.value == str(tiny_index) and engine.describe() in [c.value for c in at.sidebar.caption]
    box.set_value(str(tmp_path / "another_index")).run()
    assert not at.exception
    assert f"No search index at `{tmp_path / 'another_index'}`" in at.error[0].value and not at.file_uploader


def test_messages_for_visitors_hide_server_paths(tmp_path):
    """The page and the HTTP API hide paths alike (indexer.path_hiding)."""
    index = tmp_path / "shop_index"
    message = (f"{index}/versions/3/index.faiss is damaged; {tmp_path}/shop_index2 is another; "
               "/srv/models/run7/checkpoint.pt: wrong shapes; see https://example.org/a/b")
    assert hide_server_paths(message, {index: "indexes/shop"}) == (
        "indexes/shop/versions/3/index.faiss is damaged; …/shop_index2 is another; "
        "…/checkpoint.pt: wrong shapes; see https://example.org/a/b")
    images = tmp_path / "photos"
    message = f"{images}/a/b.jpg is unreadable; {index}/manifest.json is missing; /srv is full"
    assert hide_server_paths(message, {str(index): "<index>", str(images): "<images>", "": "<images>"}) == (
        "<images>/a/b.jpg is unreadable; <index>/manifest.json is missing; …/srv is full")


def test_no_clothing_needs_both_signals_near_chance():
    from fashionnet.inference.prediction import Landmark, Prediction
    from fashionnet.landmarks import LANDMARK_NAMES

    def prediction(visible_prob: float, category_prob: float) -> Prediction:
        lms = [Landmark(n, 1.0, 1.0, "occluded", visible_prob) for n in LANDMARK_NAMES]
        return Prediction(lms, "Tees", category_prob, [], np.zeros(4, np.float32), (10, 10))

    blank = prediction(NO_CLOTHING_LANDMARK_PROB / 2, 1 / 9)
    assert no_clothing_found(blank, num_categories=9)
    assert not no_clothing_found(prediction(NO_CLOTHING_LANDMARK_PROB * 2, 1 / 9), num_categories=9)
    assert not no_clothing_found(prediction(NO_CLOTHING_LANDMARK_PROB / 2, 0.5), num_categories=9)
    # a checkpoint with an out-of-distribution density decides by it alone
    sure = prediction(0.9, 0.9)
    assert no_clothing_found(dataclasses.replace(sure, unfamiliar=True, unfamiliarity=3.0), num_categories=9)
    assert not no_clothing_found(dataclasses.replace(blank, unfamiliar=False, unfamiliarity=0.9), num_categories=9)


def parts_shown(caption: str):
    """({part: value}, total) of an explained result's caption "a 0.1 + b 0.2 = 0.3", else None."""
    m = re.fullmatch(r"((?:[a-z]+ -?\d+\.\d+ \+ )*[a-z]+ -?\d+\.\d+) = (-?\d+\.\d+)", caption)
    if not m:
        return None
    named = {name: float(value) for name, value in (term.split(" ") for term in m.group(1).split(" + "))}
    return named, float(m.group(2))


def _warnings(at: AppTest) -> list[str]:
    return [w.value for w in at.warning]


def test_plain_and_noise_images_are_flagged_but_still_answered(page_env, engine):
    at = open_page()
    rng = np.random.default_rng(0)
    for name, pixels in (("grey.png", np.full((200, 160, 3), 128, np.uint8)),
                         ("noise.png", rng.integers(0, 256, (200, 160, 3), dtype=np.uint8))):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        at.file_uploader(key="upload").set_value((name, buffer.getvalue(), "image/png"))
        at.run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        # the page warns exactly when the model's check calls the photo unfamiliar (the briefly
        # trained tiny model's check catches the flat grey photo, not always the noise)
        flagged = engine.query(Image.fromarray(pixels)).prediction.unfamiliar
        warned = any(w.startswith(f"**This does not look like a garment photo.** **{name}**") for w in _warnings(at))
        assert warned == flagged and (flagged or name != "grey.png"), _warnings(at)
        assert result_captions(at), "a flagged photo still gets its matches"
        if flagged:  # the answer leads with it: no category headlined, no landmark drawn or listed as sure
            assert _warnings(at)[0].startswith("**This does not look like a garment photo.**")
            assert not any(md.value.startswith("**Category:**") and "none named" not in md.value for md in at.markdown)
            assert at.dataframe[0].value["unsure"].all()


def test_a_garment_photo_is_not_flagged(page_env, test_consumer_photos, engine):
    familiar = [p for p in test_consumer_photos if not engine.query(p, k=1).prediction.unfamiliar]
    assert familiar, "the tiny model flags every test photo"
    at = open_page()
    at.file_uploader(key="upload").set_value((familiar[0].name, familiar[0].read_bytes(), "image/jpeg"))
    at.run()
    assert not any("does not look like a garment photo" in w for w in _warnings(at)) and result_captions(at)


def test_category_and_attribute_filters_and_explained_results(page_env, test_consumer_photos, engine):
    at = open_page()
    photo = test_consumer_photos[0]
    gallery = engine.index.metadata
    category = str(gallery["category"].dropna().iloc[0])
    at.selectbox(key="category").set_value(category)
    at.toggle(key="explain").set_value(True)
    at.file_uploader(key="upload").set_value((photo.name, photo.read_bytes(), "image/jpeg"))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = result_captions(at)
    assert len(shown) == min(K, int((gallery["category"] == category).sum()))
    assert {c.value.split(" · ")[0] for c in at.caption if TYPE_CAPTION.search(c.value)} == {category}
    # each result's score as the sum of the parts its model has: the tiny model's fusion of global and
    # local features, its bias, and the pooled appearance it appends (the training default)
    parts = [parts_shown(c.value) for c in at.caption]
    parts = [p for p in parts if p is not None]
    assert len(parts) == len(shown)
    for (_, _, score), (named, total) in zip(shown, parts):
        assert set(named) == {"global", "appearance", "local", "bias"}
        assert sum(named.values()) == pytest.approx(total, abs=2e-3) and total == pytest.approx(score, abs=2e-3)

    # an attribute filter offered by the page only keeps results that have the attribute
    options = at.multiselect(key="attributes").options
    assert options, "the gallery's attributes are offered"
    at.selectbox(key="category").set_value("Any")
    at.multiselect(key="attributes").set_value([options[0]])
    at.run()
    page_k = int(at.number_input(key="k").value)
    expected = engine.query(photo, k=page_k, attributes=[options[0]]).matches
    allowed = SearchEngine.allowed_ids(Filters(attributes=(options[0],)), engine.index)
    assert set(expected["id"]) <= set(allowed) and len(expected) == min(page_k, len(allowed))
    assert [item for _, item, _ in result_captions(at)] == expected["item_id"].astype(str).tolist()
