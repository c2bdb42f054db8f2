"""What the index does with the vectors it is given: it stores and searches directions (unit
vectors), whatever their length, and refuses rows it cannot normalise with a clear ValueError.

Only the public API (EmbeddingIndex.create/add/search/save/load/export_vectors) is used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from indexer.store import EmbeddingIndex

DIM = 4


def _index(**kwargs) -> EmbeddingIndex:
    return EmbeddingIndex.create(DIM, device="cpu", **kwargs)


def test_added_vectors_are_stored_as_unit_vectors():
    index = _index()
    raw = np.array([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.25], [-2.0, 0.0, 2.0, 1.0]], dtype=np.float32)
    before = raw.copy()
    index.add(raw, show_progress=False)
    np.testing.assert_array_equal(raw, before, err_msg="add() must not normalise the caller's array in place")
    stored, ids = index.export_vectors()
    stored = stored[np.argsort(ids)]
    expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(stored, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-6)


def test_long_vectors_do_not_outrank_better_aligned_short_ones():
    # Under a raw inner product the long vector (norm 100) would win; by direction the short,
    # nearly parallel one is the nearest.
    index = _index()
    long_off_axis = [60.0, 80.0, 0.0, 0.0]  # 53 degrees from the query
    short_aligned = [0.1, 0.001, 0.0, 0.0]
    index.add(np.array([long_off_axis, short_aligned], dtype=np.float32), show_progress=False)
    result = index.search(np.array([2.0, 0.0, 0.0, 0.0], dtype=np.float32), k=2)
    assert result.ids[0].tolist() == [1, 0]
    # Scores are cosines: queries are normalised too.
    np.testing.assert_allclose(result.scores[0], [0.1 / np.hypot(0.1, 0.001), 0.6], atol=1e-5)
    assert result.rows["score"].max() <= 1.0 + 1e-6


def test_unnormalised_query_scores_like_its_unit_direction():
    index = _index()
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(20, DIM)).astype(np.float32) * rng.uniform(0.1, 50, size=(20, 1)).astype(np.float32)
    index.add(gallery, show_progress=False)
    query = np.array([[5.0, -1.0, 2.0, 0.5]], dtype=np.float32)
    result = index.search(query * 37.0, k=5)
    unit_g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    cosines = unit_g @ (query[0] / np.linalg.norm(query[0]))
    best = np.argsort(-cosines)[:5]
    assert result.ids[0].tolist() == best.tolist()
    np.testing.assert_allclose(result.scores[0], cosines[best], atol=1e-5)


def test_normalisation_survives_save_and_load(tmp_path):
    index = _index()
    index.add(np.array([[0.0, 9.0, 0.0, 12.0]], dtype=np.float32), pd.DataFrame({"item_id": ["a"]}), show_progress=False)
    index.save(tmp_path / "idx")
    loaded = EmbeddingIndex.load(tmp_path / "idx", device="cpu")
    stored, _ = loaded.export_vectors()
    np.testing.assert_allclose(stored, [[0.0, 0.6, 0.0, 0.8]], atol=1e-6)
    hit = loaded.search(np.array([0.0, 3.0, 0.0, 4.0]), k=1)
    assert hit.rows["item_id"].tolist() == ["a"] and hit.scores[0][0] == pytest.approx(1.0, abs=1e-6)


def test_torch_tensors_and_single_vectors_are_accepted():
    index = _index()
    ids = index.add(torch.tensor([[0.0, 0.0, 2.0, 0.0], [1.0, 1.0, 0.0, 0.0]]), show_progress=False)
    assert ids.tolist() == [0, 1] and len(index) == 2
    result = index.search(torch.tensor([0.0, 0.0, 7.0, 0.0]), k=1)  # one 1-D query
    assert len(result.ids) == 1 and result.ids[0].tolist() == [0]
    assert result.scores[0][0] == pytest.approx(1.0, abs=1e-6)
    more = index.add(np.array([0.0, 3.0, 0.0, 0.0]), show_progress=False)  # one 1-D vector
    assert more.tolist() == [2] and len(index) == 3


BAD_ROWS = {
    "NaN": ([[1.0, 0.0, 0.0, 0.0], [np.nan, 1.0, 0.0, 0.0]], "NaN"),
    "inf": ([[np.inf, 0.0, 0.0, 0.0]], "inf"),
    "negative inf": ([[0.0, -np.inf, 1.0, 0.0]], "inf"),
    "all-zero row": ([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], "zero"),
    "wrong dimension": ([[1.0, 0.0, 0.0]], r"shape \(N, 4\)"),
    "too many dimensions": ([[[1.0, 0.0, 0.0, 0.0]]], r"shape \(N, 4\)"),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_bad_vectors_are_refused_by_add_and_leave_the_index_unchanged(case):
    rows, message = BAD_ROWS[case]
    index = _index()
    index.add(np.array([[0.0, 1.0, 0.0, 0.0]], dtype=np.float32), show_progress=False)
    with pytest.raises(ValueError, match=message):
        index.add(np.array(rows, dtype=np.float32), show_progress=False)
    assert len(index) == 1 and index.ids.tolist() == [0]
    assert index.add(np.array([[0.0, 0.0, 1.0, 0.0]]), show_progress=False).tolist() == [1], "no id was used up"


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_bad_queries_are_refused_by_search(case):
    rows, message = BAD_ROWS[case]
    index = _index()
    index.add(np.eye(DIM, dtype=np.float32), show_progress=False)
    with pytest.raises(ValueError, match=message):
        index.search(np.array(rows, dtype=np.float32), k=2)


def test_bad_training_vectors_are_refused():
    index = _index(index_factory="IVF2,Flat")
    train = np.random.default_rng(0).normal(size=(50, DIM)).astype(np.float32)
    train[7] = 0.0
    with pytest.raises(ValueError, match="training vectors contain an all-zero row"):
        index.train(train)
    train[7] = np.nan
    with pytest.raises(ValueError, match="training vectors contain NaN"):
        index.train(train)
    assert not index.is_trained


def test_k_below_one_is_refused():
    index = _index()
    index.add(np.eye(DIM, dtype=np.float32), show_progress=False)
    with pytest.raises(ValueError, match="k must be at least 1"):
        index.search(np.eye(DIM, dtype=np.float32)[:1], k=0)
