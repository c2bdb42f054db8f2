"""Thread settings for serving: one thread per query unless the operator says otherwise."""

from __future__ import annotations

import faiss
import pytest
import torch

from fashionnet.device import serving_threads, set_threads
from indexer.search import SearchEngine


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    set_threads(before)


def test_opening_a_search_engine_sets_one_thread_per_query(tiny_index, monkeypatch):
    monkeypatch.delenv("FASHIONNET_THREADS", raising=False)
    set_threads(2)
    SearchEngine.open(tiny_index, device="cpu")
    assert torch.get_num_threads() == 1 and faiss.omp_get_max_threads() == 1


def test_the_operator_chooses_the_threads(tiny_index, monkeypatch):
    monkeypatch.setenv("FASHIONNET_THREADS", "2")
    SearchEngine.open(tiny_index, device="cpu")
    assert torch.get_num_threads() == 2 and faiss.omp_get_max_threads() == 2
    SearchEngine.open(tiny_index, device="cpu", threads=1)  # an explicit argument wins
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("value", ["two", "0", "-3"])
def test_a_bad_thread_setting_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("FASHIONNET_THREADS", value)
    with pytest.raises(ValueError, match=r"\$FASHIONNET_THREADS must be"):
        serving_threads()
