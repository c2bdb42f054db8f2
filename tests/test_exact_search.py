"""Exact search of one query with numpy over a flat index's own memory: the same neighbours as
FAISS and as brute force, after adds and removals too; other indexes and large batches stay FAISS's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import indexer.exact_search
from indexer.exact_search import flat_storage, top_k_inner_product
from indexer.store import EmbeddingIndex


def unit(rng, n, d=16):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def flat_index():
    rng = np.random.default_rng(5)
    index = EmbeddingIndex.create(16, device="cpu")
    vectors = unit(rng, 300)
    index.add(vectors, pd.DataFrame({"item_id": [f"item_{i}" for i in range(300)]}), show_progress=False)
    return index, vectors, rng


def brute_force(vectors, ids, query, k):
    scores = vectors @ query
    best = np.argsort(-scores)[:k]
    return scores[best], ids[best]


def test_one_query_finds_what_brute_force_and_faiss_find(flat_index):
    index, vectors, rng = flat_index
    for query in unit(rng, 10):
        result = index.search(query, 7)
        expected_scores, expected_ids = brute_force(vectors, np.arange(300), query, 7)
        assert result.ids[0].tolist() == expected_ids.tolist()
        assert np.allclose(result.scores[0], expected_scores, atol=1e-5)
        faiss_scores, faiss_ids = index._index.search(query[None, :], 7)
        assert result.ids[0].tolist() == faiss_ids[0].tolist()
        assert result.rows["item_id"].tolist() == [f"item_{i}" for i in expected_ids]


def test_ids_stay_right_after_removals_and_adds(flat_index):
    index, vectors, rng = flat_index
    removed = np.arange(0, 300, 3)
    index.remove_ids(removed)
    extra = unit(rng, 50)
    new_ids = index.add(extra, pd.DataFrame({"item_id": [f"new_{i}" for i in range(50)]}), show_progress=False)
    kept = np.setdiff1d(np.arange(300), removed)
    all_vectors, all_ids = np.concatenate([vectors[kept], extra]), np.concatenate([kept, new_ids])
    stored, stored_ids = flat_storage(index._index)
    order = np.argsort(stored_ids)
    assert np.array_equal(stored_ids[order], np.sort(all_ids))
    assert np.allclose(stored[order], all_vectors[np.argsort(all_ids)])
    for query in np.concatenate([extra[:3], vectors[removed[:3]]]):
        expected_scores, expected_ids = brute_force(all_vectors, all_ids, query, 5)
        found = index.search(query, 5)
        assert found.ids[0].tolist() == expected_ids.tolist()
        assert not set(found.ids[0]) & set(removed)


def test_k_as_large_as_the_index_returns_everything_in_order():
    rng = np.random.default_rng(1)
    vectors = unit(rng, 6)
    ids = np.array([10, 11, 12, 13, 14, 15])
    scores, found = top_k_inner_product(vectors, ids, vectors[2:4], 6)
    for row, query in enumerate(vectors[2:4]):
        expected_scores, expected_ids = brute_force(vectors, ids, query, 6)
        assert found[row].tolist() == expected_ids.tolist()
        assert np.allclose(scores[row], expected_scores, atol=1e-6)
    assert found[0, 0] == 12 and found[1, 0] == 13


@pytest.mark.parametrize("factory, metric", [("IVF4,Flat", "ip"), ("HNSW8", "ip"), ("Flat", "l2")])
def test_other_indexes_have_no_flat_storage_view(factory, metric):
    index = EmbeddingIndex.create(16, factory, metric=metric, device="cpu")
    vectors = unit(np.random.default_rng(2), 200)
    index.train(vectors)
    index.add(vectors, show_progress=False)
    assert flat_storage(index._index) is None


def test_one_query_takes_the_numpy_path_and_two_go_to_faiss(flat_index, monkeypatch):
    index, vectors, rng = flat_index
    calls = []
    real = indexer.exact_search.top_k_inner_product
    monkeypatch.setattr(indexer.exact_search, "top_k_inner_product", lambda *a: calls.append(len(a[2])) or real(*a))
    one = index.search(vectors[7], 3)
    assert calls == [1] and one.ids[0][0] == 7
    two = index.search(vectors[:2], 3)
    assert calls == [1]  # FAISS's threads over the queries answered the two
    assert [ids[0] for ids in two.ids] == [0, 1]
