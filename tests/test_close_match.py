"""The close-match score (indexer.close_match): fitted per catalogue from the checkpoint's held-out
photos, recorded by the build, and read by every search as a ``match`` flag; and the explained
score's parts, which add up to the score with no part that is always 0."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from fashionnet.calibration.close_match import MatchReference
from fashionnet.data.readers import read_benchmark
from indexer.close_match import MATCH_RECALL, CloseMatch, fit_close_match, match_flags, with_match
from indexer.search import SearchEngine
from indexer.store import EmbeddingIndex


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _index(vectors: np.ndarray) -> EmbeddingIndex:
    index = EmbeddingIndex.create(vectors.shape[1], None, device="cpu")
    index.add(vectors, pd.DataFrame({"item_id": [f"g{i}" for i in range(len(vectors))]}), show_progress=False)
    return index


def test_the_score_is_one_most_photos_of_items_in_the_catalogue_reach_and_look_alikes_raise_it():
    rng = np.random.default_rng(0)
    photos = _unit(rng.normal(size=(60, 16)))
    positives = rng.uniform(0.3, 0.9, size=60)
    reference = MatchReference(photos, positives, "m")
    gallery = _unit(rng.normal(size=(40, 16)))
    close = fit_close_match(_index(gallery), reference)

    # had each photo's item been in the catalogue, its best score would be the larger of its
    # positive and its best score here; at least MATCH_RECALL of those reach the close-match score
    others = (photos @ gallery.T).max(axis=1)
    here = np.maximum(positives, others)
    assert np.mean(here >= close.min_score) >= MATCH_RECALL
    assert close.min_score in here and close.held_out == 60
    assert close.others_above == pytest.approx(np.mean(others >= close.min_score))
    assert np.mean(here > close.min_score) < np.mean(here >= close.min_score)  # the highest score that keeps the share

    # a catalogue holding look-alikes of the held-out photos' items calls for a higher best score
    look_alikes = _unit(photos + 0.3 * rng.normal(size=photos.shape))
    crowded = fit_close_match(_index(np.concatenate([gallery, look_alikes])), reference)
    assert crowded.min_score > close.min_score and crowded.others_above > close.others_above


def test_no_score_without_enough_photos_or_on_a_distance_index():
    rng = np.random.default_rng(1)
    gallery = _index(_unit(rng.normal(size=(10, 8))))
    assert fit_close_match(gallery, MatchReference(_unit(rng.normal(size=(8, 8))), np.full(8, 0.5), "m")) is None
    l2 = EmbeddingIndex.create(8, None, metric="l2", device="cpu")
    l2.add(_unit(rng.normal(size=(5, 8))), show_progress=False)
    assert fit_close_match(l2, MatchReference(_unit(rng.normal(size=(30, 8))), np.full(30, 0.5), "m")) is None


def test_no_score_when_the_index_and_the_reference_were_embedded_differently():
    rng = np.random.default_rng(2)
    reference = MatchReference(_unit(rng.normal(size=(40, 8))), rng.uniform(0.3, 0.9, size=40), "m", flip_average=True)
    index = _index(_unit(rng.normal(size=(20, 8))))
    index.extra = {**(index.extra or {}), "flip_average": False}  # indexer build --no-flip-average
    assert fit_close_match(index, reference) is None
    index.extra = {**index.extra, "flip_average": True}
    assert fit_close_match(index, reference) is not None


def test_a_photo_flagged_unfamiliar_is_never_a_close_match():
    close = CloseMatch(0.5, 0.9, 100, 0.2)
    assert match_flags([0.9, 0.5, 0.49], close, unfamiliar=False) == [True, True, False]
    assert match_flags([0.9, 0.5], close, unfamiliar=True) == [False, False]
    assert match_flags([0.9], None, unfamiliar=False) == [None]
    matches, any_match = with_match(pd.DataFrame({"score": [0.4, 0.3]}), close, unfamiliar=False)
    assert matches["match"].tolist() == [False, False] and any_match is False


def test_the_build_records_the_score_and_searches_flag_close_matches(trust_index, trust_checkpoint, synth_root):
    manifest = json.loads((trust_index / "manifest.json").read_text())
    recorded = CloseMatch.from_extra(manifest["extra"])
    assert recorded is not None and recorded.recall == MATCH_RECALL and recorded.held_out >= 20
    engine = SearchEngine.open(trust_index, device="cpu", runtime="torch")
    assert fit_close_match(engine.index, engine.predictor.match_reference) == recorded
    gallery = engine.index.metadata
    own = engine.query(gallery["image_path"].iloc[0], k=3)  # a gallery photo finds itself, a close match
    assert own.matches["score"].iloc[0] == pytest.approx(1.0, abs=1e-4) and own.match is True
    assert own.matches["match"].tolist() == [s >= recorded.min_score for s in own.matches["score"]]


def test_a_build_without_flip_averaging_records_no_score_and_says_why(trust_checkpoint, synth_root, tmp_path, capsys):
    from tests.cli_helpers import run_cli

    out = tmp_path / "idx"
    code, printed, err = run_cli(capsys, "build", "--checkpoint", trust_checkpoint, "--data-root", synth_root / "consumer2shop",
                                 "--out", out, "--no-flip-average", "--workers", 0, "--no-progress", "--device", "cpu")
    assert code == 0, err
    assert "held-out photos were embedded with flip averaging, this index without" in printed
    assert CloseMatch.from_extra(EmbeddingIndex.load(out).extra) is None


def test_removing_items_fits_the_score_again(trust_index, tmp_path, capsys):
    import shutil

    from tests.cli_helpers import run_cli

    cli_dir, api_dir = tmp_path / "cli", tmp_path / "api"
    shutil.copytree(trust_index, cli_dir)
    shutil.copytree(trust_index, api_dir)
    before = CloseMatch.from_extra(EmbeddingIndex.load(cli_dir).extra)
    engine = SearchEngine.open(api_dir, device="cpu", runtime="torch")
    reference = engine.predictor.match_reference
    items = sorted(set(engine.index.metadata["item_id"]))
    gone = items[: len(items) // 2]  # half the catalogue: its look-alikes go with it

    code, _, err = run_cli(capsys, "remove", cli_dir, *[a for item in gone for a in ("--item", item)])
    assert code == 0, err
    engine.remove_items(gone)  # the API's DELETE /items
    for folder in (cli_dir, api_dir):
        index = EmbeddingIndex.load(folder)
        recorded = CloseMatch.from_extra(index.extra)
        assert recorded is not None and recorded == fit_close_match(index, reference)
        assert recorded != before


def test_an_index_built_before_fits_the_score_when_opened(tiny_index, trust_checkpoint):
    assert "close_match" not in json.loads((tiny_index / "manifest.json").read_text())["extra"]
    assert SearchEngine.open(tiny_index, device="cpu", runtime="torch").close_match is None  # its model has no reference
    engine = SearchEngine.open(tiny_index, checkpoint=str(trust_checkpoint), device="cpu", runtime="torch")
    assert engine.close_match is not None and engine.close_match == fit_close_match(engine.index, engine.predictor.match_reference)


def test_a_reference_of_another_model_is_not_used(trust_checkpoint, tmp_path):
    from fashionnet.inference.predictor import Predictor
    from fashionnet.models.checkpoint import atomic_torch_save, load_checkpoint

    ckpt = load_checkpoint(trust_checkpoint)
    ckpt["close_match"]["model_checksum"] = "another"
    atomic_torch_save(ckpt, tmp_path / "stale.pt")
    assert Predictor.from_checkpoint(tmp_path / "stale.pt", device="cpu", runtime="torch").match_reference is None
    assert Predictor.from_checkpoint(trust_checkpoint, device="cpu", runtime="torch").match_reference is not None


def test_explained_parts_of_a_model_whitened_part_by_part_add_up_without_a_global_part(synth_root):
    """Whitened part by part beside the appearance, the fusion feature is not searched: the page
    showed "global 0.000" for every result. The parts are now the ones the score has."""
    from fashionnet.inference.predictor import Predictor
    from fashionnet.models import FashionNetConfig, create_model

    torch.manual_seed(0)
    model = create_model(FashionNetConfig(backbone="tiny", embedding_dim=16, image_size=96, appearance_weight=0.5,
                                          colour_window=0.0, detail_window=0.0)).eval()
    parts = model.whitening_parts()  # the appearance and the landmark windows: the fusion feature is not one
    assert parts[0].start == model.config.embedding_dim
    projection = torch.zeros(model.descriptor_dim, 2 * len(parts))
    for p, part in enumerate(parts):
        projection[part, 2 * p:2 * p + 2] = torch.randn(part.stop - part.start, 2)
    model.set_whitening(torch.randn(model.descriptor_dim) * 0.01, projection, groups=torch.eye(len(parts)).repeat_interleave(2, dim=0))
    predictor = Predictor(model, model.config, {"categories": [], "attributes": []}, {"image_size": 96}, "test", device="cpu",
                          fold_batch_norms=False, runtime="torch")
    photos = sorted((synth_root / "consumer2shop").glob("img/*/*/*/*.jpg"))[:4]
    embeddings = np.stack([p.embedding for p in predictor.predict_batch(photos)])
    explained = predictor.score_parts(embeddings[0], photos[1:])
    assert all(set(p) == {"local", "bias", "appearance"} for p in explained)
    assert all(abs(p["appearance"]) > 1e-4 and abs(p["local"]) > 1e-4 for p in explained)
    np.testing.assert_allclose([sum(p.values()) for p in explained], embeddings[1:] @ embeddings[0], atol=1e-4)


def test_the_measuring_script_gives_the_three_rates(trust_index, synth_root, capsys):
    from tests.conftest import load_script

    load_script("measure_close_match").main(["--index", str(trust_index), "--queries", str(synth_root / "consumer2shop"),
                                             "--absent", str(synth_root / "style_shift"), "--probes", "2", "--recalls", "0.5", "0.9",
                                             "--device", "cpu", "--runtime", "torch"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "%" in line]
    assert len(rows) == 3 + 2
    cells = [[c.strip() for c in row.split("|")[1:-1]] for row in rows[:3]]
    frame = read_benchmark(synth_root / "consumer2shop", "consumer2shop", verify_images=False)
    assert int(cells[0][1]) == len(frame[(frame["split"] == "test") & (frame["source"] == "consumer")])
    percent = [[float(c.rstrip("%")) for c in row[2:]] for row in cells]
    assert "photos without a garment" in cells[2][0] and int(cells[2][1]) == 8
    assert percent[2][0] <= 100 - percent[2][1] + 1e-9  # a flagged photo is never a close match
    engine = SearchEngine.open(trust_index, device="cpu", runtime="torch")
    assert f"close match from score {engine.close_match.min_score:.3f}" in out


def test_info_says_the_close_match_in_words(capsys, trust_index, tiny_index):
    from indexer.close_match import CloseMatch
    from indexer.store import EmbeddingIndex
    from tests.cli_helpers import run_cli

    close = CloseMatch.from_extra(EmbeddingIndex.load(trust_index).extra)
    code, out, _ = run_cli(capsys, "info", trust_index)
    assert code == 0 and f"close match from score {close.min_score:.3f}" in out and "{" not in out.split("close_match", 1)[1].splitlines()[0]
    if CloseMatch.from_extra(EmbeddingIndex.load(tiny_index).extra) is None:
        code, out, _ = run_cli(capsys, "info", tiny_index)
        assert re.search(r"^close_match\s+none recorded$", out, re.M)
