"""The page says how far to trust its answer (Streamlit AppTest, as tests/test_webui_apptest.py):
"no close match in this catalogue" under the index's close-match score, with the nearest items
still listed, and an opening example the model gets right, chosen by the rule in webui/examples.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from indexer.search import SearchEngine
from indexer.updates import locked_update
from tests.test_webui_apptest import _fresh_streamlit_caches, _index_choice_not_allowed, open_page, result_captions  # noqa: F401
from webui.app import MAX_EXAMPLES, UPLOAD_TYPES
from webui.examples import MOSTLY_SURE, example_photos

K = 4


@pytest.fixture()
def trust_page(monkeypatch, trust_index, synth_root, tmp_path) -> Path:
    """The page on a copy of the trust index (its close-match score may be changed), with examples."""
    index_dir = tmp_path / "idx"
    shutil.copytree(trust_index, index_dir)
    monkeypatch.setenv("FASHIONNET_INDEX", str(index_dir))
    monkeypatch.setenv("FASHIONNET_EXAMPLES_DIR", str(synth_root / "consumer2shop"))
    monkeypatch.setenv("FASHIONNET_DEVICE", "cpu")
    monkeypatch.setenv("FASHIONNET_RUNTIME", "torch")
    return index_dir


def _set_close_match_score(index_dir: Path, score: float) -> None:
    with locked_update(index_dir) as index:
        index.extra = {**index.extra, "close_match": {**index.extra["close_match"], "min_score": score}}
        index.save(index_dir)  # a manifest-only change: locked_update saves only changed vectors or rows


def _infos(at) -> list[str]:
    return [i.value for i in at.info]


def test_under_the_close_match_score_the_page_says_so_and_still_lists_the_nearest(trust_page, synth_root):
    photo = sorted((synth_root / "consumer2shop" / "img").rglob("comsumer_*.jpg"))[0]
    best = float(SearchEngine.open(trust_page, device="cpu", runtime="torch").query(photo, k=K).matches["score"].max())

    for score, close in ((best + 0.01, False), (best - 0.01, True)):
        _set_close_match_score(trust_page, score)
        at = open_page()
        at.number_input(key="k").set_value(K)
        at.file_uploader(key="upload").set_value((photo.name, photo.read_bytes(), "image/jpeg"))
        at.run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        said = [i for i in _infos(at) if i.startswith("**No close match in this catalogue.**")]
        headings = [h.value for h in at.subheader]
        assert len(result_captions(at)) == K, "the nearest items are listed either way"
        if close:
            assert not said and f"Top {K} shop matches" in headings
        else:
            assert len(said) == 1 and f"{best:.3f}" in said[0] and f"{score:.3f}" in said[0]
            assert f"Nearest {K} shop items" in headings


def test_the_page_opens_on_the_first_example_the_model_gets_right(trust_page, synth_root):
    engine = SearchEngine.open(trust_page, device="cpu", runtime="torch")
    at = open_page()
    at.radio(key="source").set_value("Use an example")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    example = at.selectbox(key="example")

    def right(photo: str) -> bool:  # the rule, written out: its own item first, a close match, mostly sure landmarks
        result = engine.query(photo, k=1)
        present = result.prediction.present_landmarks
        return (result.matches["item_id"].iloc[0] == Path(photo).parent.name and result.match is not False
                and not result.prediction.unfamiliar and sum(not lm.low_confidence for lm in present) > MOSTLY_SURE * len(present))

    photos = [photo for photo, _ in example_photos(synth_root / "consumer2shop", MAX_EXAMPLES, UPLOAD_TYPES)]
    assert len(photos) == len(example.options) and example.value in photos
    verdicts = [right(photo) for photo in photos]
    assert any(verdicts), "the tiny model gets no example right: the rule cannot be seen at work"
    assert example.value == photos[verdicts.index(True)]
