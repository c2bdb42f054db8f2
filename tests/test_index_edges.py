"""EmbeddingIndex at its edges, through its public API only: argument checks and their messages,
index kinds (L2, HNSW, IVF, PQ, SQ, PCA), ids and metadata across remove/merge, progress output,
info(), and the GPU search routing with a simulated GPU. Added when a mutation run
(scripts/mutation_test.sh) showed these paths were not pinned down by tests/test_index_store.py.
"""

from __future__ import annotations

import re

import faiss
import numpy as np
import pandas as pd
import pytest
import torch

from indexer import store
from indexer.errors import IndexDeviceError, IndexMismatchError
from indexer.store import EmbeddingIndex
from indexer.updates import merge

DIM = 8


def _vectors(n, seed=0, dim=DIM):
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _meta(n, start=0):
    return pd.DataFrame({"item_id": [f"item{start + i}" for i in range(n)], "n": np.arange(start, start + n)})


# ------------------------------------------------------------------------------------ creation


def test_create_checks_its_arguments():
    with pytest.raises(ValueError, match="dim must be positive, got 0"):
        EmbeddingIndex.create(0)
    assert EmbeddingIndex.create(1, device="cpu").dim == 1
    with pytest.raises(ValueError, match=r"metric must be one of \('ip', 'l2'\), got 'cos'"):
        EmbeddingIndex.create(DIM, metric="cos")
    with pytest.raises(ValueError, match="FAISS cannot build an index from factory string 'Nonsense42'"):
        EmbeddingIndex.create(DIM, "Nonsense42")
    with pytest.raises(ValueError, match="IVF indexes keep their own ids.*drop the IDMap prefix"):
        EmbeddingIndex.create(DIM, "IDMap,IVF4,Flat")
    with pytest.raises(ValueError, match="device must be one of"):
        EmbeddingIndex.create(DIM, device="tpu")


def test_default_is_an_exact_inner_product_index_on_the_default_device():
    index = EmbeddingIndex.create(DIM)
    assert index.index_factory == "Flat" and index.metric == "ip" and index.device in ("cpu", "cuda")
    assert EmbeddingIndex.create(DIM, "Flat", device="cpu").index_factory == "Flat"
    info = index.info()
    assert info["index_type"] == "IndexIDMap2(IndexFlatIP)" and info["nlist"] is None and info["nprobe"] is None
    assert index.nprobe is None
    empty = index.metadata
    assert len(empty) == 0 and empty.index.name == "id" and empty.index.dtype == np.int64
    assert index.ids.dtype == np.int64 and len(index.ids) == 0


def test_l2_metric_scores_squared_distances():
    index = EmbeddingIndex.create(DIM, metric="l2", device="cpu")
    x = _vectors(5)
    index.add(x, show_progress=False)
    result = index.search(x[2], k=2)
    assert result.ids[0][0] == 2 and result.scores[0][0] == pytest.approx(0.0, abs=1e-6)
    assert result.scores[0][1] == pytest.approx(float(((x[2] - x[result.ids[0][1]]) ** 2).sum()), rel=1e-5)
    assert index.info()["index_type"] == "IndexIDMap2(IndexFlatL2)"


def test_json_only_model_config_and_extra():
    with pytest.raises(ValueError, match="model_config must be JSON-serialisable"):
        EmbeddingIndex.create(DIM, model_config={"x": object()})
    with pytest.raises(ValueError, match="extra must be JSON-serialisable"):
        EmbeddingIndex.create(DIM, extra={"x": {1, 2}})


def test_repr_names_the_structure_size_and_device():
    index = EmbeddingIndex.create(DIM, device="cpu")
    index.add(_vectors(3), show_progress=False)
    assert repr(index) == "EmbeddingIndex(IndexIDMap2(IndexFlatIP), dim=8, count=3, device='cpu')"


def test_empty_copy_keeps_structure_and_model_but_no_vectors():
    index = EmbeddingIndex.create(DIM, "IVF4,Flat", model_checksum="abc", model_config={"m": 1}, extra={"e": 2}, device="cpu")
    index.train(_vectors(200))
    index.nprobe = 3
    index.add(_vectors(10), _meta(10), show_progress=False)
    copy = index.empty_copy()
    assert len(copy) == 0 and copy.is_trained and len(index) == 10
    assert (copy.model_checksum, copy.model_config, copy.extra) == ("abc", {"m": 1}, {"e": 2})
    assert (copy.metric, copy.index_factory, copy.device, copy.nprobe) == ("ip", "IVF4,Flat", "cpu", 3)
    copy.add(_vectors(2, seed=5), show_progress=False)  # trained: no train() needed
    assert len(copy) == 2


# ---------------------------------------------------------------------------------- training


def test_training_checks():
    ivf = EmbeddingIndex.create(DIM, "IVF4,Flat", device="cpu")
    assert not ivf.is_trained and ivf.info()["is_trained"] is False
    with pytest.raises(ValueError, match="is not trained yet: call train"):
        ivf.add(_vectors(5), show_progress=False)
    with pytest.raises(ValueError, match=r"'IVF4,Flat' needs at least nlist=4 training vectors \(39 x nlist advised\), got 3"):
        ivf.train(_vectors(3))
    ivf.train(torch.from_numpy(_vectors(4)))  # exactly nlist is enough; tensors are fine
    assert ivf.is_trained and ivf.nprobe == 1 and ivf.info()["nlist"] == 4
    flat = EmbeddingIndex.create(DIM, device="cpu")
    flat.train(_vectors(3))  # nothing to train: a no-op
    flat.add(_vectors(1), show_progress=False)
    with pytest.raises(ValueError, match="the index already holds vectors; train it before adding any"):
        flat.train(_vectors(3))


def test_training_on_a_sample_is_reproducible_per_seed():
    data = _vectors(400, seed=1)
    results = []
    for _ in range(2):
        index = EmbeddingIndex.create(DIM, "IVF8,Flat", device="cpu")
        index.train(data, max_train=100, seed=7)
        index.add(data, show_progress=False)
        results.append([i.tolist() for i in index.search(data[:20], k=5).ids])
    assert results[0] == results[1]


# ------------------------------------------------------------------------------ add and metadata


def test_metadata_checks():
    index = EmbeddingIndex.create(DIM, device="cpu")
    with pytest.raises(TypeError, match="metadata must be a pandas DataFrame, got dict"):
        index.add(_vectors(2), {"item_id": ["a", "b"]}, show_progress=False)
    with pytest.raises(ValueError, match="metadata has 1 rows for 2 vectors; need one row per vector"):
        index.add(_vectors(2), _meta(1), show_progress=False)
    for bad in ({0: ["a", "b"]}, {"score": [1, 2]}, {"rank": [1, 2]}, {"query": [1, 2]}, {"id": [1, 2]}):
        with pytest.raises(ValueError, match="metadata column names must be strings other than"):
            index.add(_vectors(2), pd.DataFrame(bad), show_progress=False)
    assert len(index) == 0


def test_metadata_with_its_own_index_keeps_only_its_columns():
    index = EmbeddingIndex.create(DIM, device="cpu")
    meta = pd.DataFrame({"item_id": pd.array(["a", "b", "c"], dtype="string")}, index=[10, 20, 30])
    ids = index.add(_vectors(3), meta, show_progress=False)
    assert ids.dtype == np.int64 and ids.tolist() == [0, 1, 2]
    stored = index.metadata
    assert list(stored.columns) == ["item_id"] and stored.index.tolist() == [0, 1, 2]
    assert stored["item_id"].tolist() == ["a", "b", "c"]
    assert stored["item_id"].dtype == object  # Arrow strings are held as objects for fast row takes
    rows = index.search(_vectors(3)[1], k=1).rows
    assert rows["item_id"].tolist() == ["b"] and rows["id"].tolist() == [1]
    # No metadata: rows with no columns.
    more = index.add(_vectors(2, seed=3), show_progress=False)
    assert more.tolist() == [3, 4] and len(index.metadata) == 5


def test_a_failed_batch_leaves_nothing_half_added(monkeypatch):
    index = EmbeddingIndex.create(DIM, device="cpu")
    index.add(_vectors(2), _meta(2), show_progress=False)
    monkeypatch.setattr(store, "_ADD_BATCH", 2)
    real = faiss.IndexIDMap2.add_with_ids
    calls = []

    def flaky(self, x, ids):
        calls.append(len(ids))
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(self, x, ids)

    monkeypatch.setattr(faiss.IndexIDMap2, "add_with_ids", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        index.add(_vectors(5, seed=1), _meta(5, start=2), show_progress=False)
    monkeypatch.setattr(faiss.IndexIDMap2, "add_with_ids", real)
    assert calls == [2, 2] and len(index) == 2 and index.ids.tolist() == [0, 1]
    assert index.search(_vectors(5, seed=1)[0], k=3).ids[0].tolist() != [2]
    assert index.add(_vectors(1, seed=9), show_progress=False).tolist() == [2], "the failed ids were not used up"


def test_add_progress_shows_for_four_batches_or_more(monkeypatch, capsys):
    index = EmbeddingIndex.create(DIM, device="cpu")
    monkeypatch.setattr(store, "_ADD_BATCH", 1)
    index.add(_vectors(3))
    assert capsys.readouterr().err == ""
    index.add(_vectors(4))
    err = capsys.readouterr().err
    assert "adding vectors" in err and "batch" in err
    index.add(_vectors(4), show_progress=False)
    assert capsys.readouterr().err == ""
    assert len(index) == 11


# -------------------------------------------------------------------------------- remove

def test_remove_takes_any_iterable_and_ignores_unknown_ids():
    index = EmbeddingIndex.create(DIM, device="cpu")
    index.add(_vectors(6), _meta(6), show_progress=False)
    assert index.remove_ids([1, 1, 99]) == 1
    assert index.remove_ids(i for i in (2, 3)) == 2
    assert index.remove_ids(np.array([[4]])) == 1
    assert index.remove_ids(torch.tensor([0])) == 1
    assert index.remove_ids([]) == 0 and index.remove_ids([42]) == 0
    assert index.ids.tolist() == [5] and len(index) == 1
    assert index.metadata["item_id"].tolist() == ["item5"]
    assert index.search(_vectors(6)[5], k=3).ids[0].tolist() == [5]


def test_remove_where_matches_values_and_names_unknown_columns():
    index = EmbeddingIndex.create(DIM, device="cpu")
    meta = pd.DataFrame({"item_id": ["a", None, "b", "a"]})
    index.add(_vectors(4), meta, show_progress=False)
    assert index.remove_where("item_id", "a").tolist() == [0, 3]
    assert index.remove_where("item_id", "zzz").tolist() == []
    assert index.ids.tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"no metadata column 'colour'; columns are \['item_id'\]"):
        index.remove_where("colour", "red")


@pytest.mark.parametrize("factory", ["HNSW8", "IVF4,PQ2x4", "IVF4,SQ8"])
def test_other_index_kinds_add_remove_and_search(factory):
    index = EmbeddingIndex.create(DIM, factory, device="cpu")
    x = _vectors(300)
    index.train(x)
    if index.nprobe is not None:
        index.nprobe = 4
    index.add(x, _meta(300), show_progress=False)
    assert index.remove_ids(range(0, 300, 2)) == 150
    assert len(index) == 150 and sorted(index.ids.tolist()) == list(range(1, 300, 2))
    hit = index.search(x[7], k=5)
    assert 7 in hit.ids[0].tolist() and set(hit.ids[0].tolist()) <= set(range(1, 300, 2))
    assert hit.rows.loc[hit.rows["id"] == 7, "item_id"].tolist() == ["item7"]


# ---------------------------------------------------------------------------------- search


def test_search_edges():
    index = EmbeddingIndex.create(DIM, device="cpu")
    empty = index.search(_vectors(2), k=3)
    assert [len(s) for s in empty.scores] == [0, 0] and [len(i) for i in empty.ids] == [0, 0] and len(empty.rows) == 0
    index.add(_vectors(3), _meta(3), show_progress=False)
    result = index.search(_vectors(3)[[2, 0]], k=10)  # k above the count: clamped
    assert [i.tolist()[0] for i in result.ids] == [2, 0] and all(len(i) == 3 for i in result.ids)
    rows = result.rows
    assert list(rows.columns[:4]) == ["query", "rank", "score", "id"]
    assert rows["query"].tolist() == [0, 0, 0, 1, 1, 1] and rows["rank"].tolist() == [1, 2, 3, 1, 2, 3]
    assert rows["item_id"].iloc[0] == "item2" and rows["item_id"].iloc[3] == "item0"
    np.testing.assert_allclose(rows["score"].to_numpy(), np.concatenate(result.scores), rtol=1e-6)
    with pytest.raises(ValueError, match="nprobe applies to IVF indexes only; this one is 'Flat'"):
        index.search(_vectors(1), k=1, nprobe=2)
    with pytest.raises(ValueError, match="nprobe applies to IVF indexes only"):
        index.nprobe = 2
    with pytest.raises(ValueError, match=r"queries must have shape \(N, 8\), got \(1, 3\)"):
        index.search(np.ones((1, 3)), k=1)


def test_ivf_nprobe_override_is_checked_clamped_and_restored():
    index = EmbeddingIndex.create(DIM, "IVF8,Flat", device="cpu")
    x = _vectors(400)
    index.train(x)
    index.add(x, show_progress=False)
    index.nprobe = 1
    with pytest.raises(ValueError, match="nprobe must be at least 1, got 0"):
        index.search(x[:1], k=1, nprobe=0)
    with pytest.raises(ValueError, match="nprobe must be at least 1, got 0"):
        index.nprobe = 0
    exact = np.argsort(-(x @ x[:20].T), axis=0)[:5].T
    wide = index.search(x[:20], k=5, nprobe=100)  # more than nlist: all 8 lists, exact
    assert [i.tolist() for i in wide.ids] == exact.tolist()
    assert index.nprobe == 1, "an override does not change the index's default"
    index.nprobe = 100
    assert index.nprobe == 8 and index.info()["nprobe"] == 8


# ----------------------------------------------------------------------------------- info


@pytest.mark.parametrize("factory,low,high", [(None, 4 * DIM, 4 * DIM + 100), ("IVF4,Flat", 4 * DIM, 4 * DIM + 40),
                                              ("IVF4,PQ2x4", 2, 4 * DIM), ("HNSW8", 4 * DIM + 32, 4 * DIM + 300),
                                              ("PCA4,IVF4,Flat", 4 * 4, 4 * 4 + 40), ("IVF4,Flat,Refine(Flat)", 8 * DIM, 8 * DIM + 120)])
def test_memory_estimate_is_plausible(factory, low, high):
    index = EmbeddingIndex.create(DIM, factory, model_checksum="m1", device="cpu")
    x = _vectors(300)
    index.train(x)
    index.add(x, _meta(300), show_progress=False)
    info = index.info()
    per = info["bytes_per_vector_estimate"]
    assert low <= per <= high, (factory, per)
    assert info["memory_bytes_estimate"] == pytest.approx(per * 300, abs=300)
    assert (info["count"], info["dim"], info["next_id"], info["model_checksum"]) == (300, DIM, 300, "m1")
    assert info["metadata_columns"] == ["item_id", "n"] and info["metric"] == "ip"
    assert info["index_factory"] == (factory or "Flat") and info["path"] is None


def test_index_type_describes_the_structure():
    kinds = {}
    for factory in ("IVF4,Flat", "PCA4,IVF4,Flat", "HNSW8"):
        index = EmbeddingIndex.create(DIM, factory, device="cpu")
        index.train(_vectors(100))
        kinds[factory] = index.info()["index_type"]
    assert kinds["IVF4,Flat"] == "IndexIVFFlat(nlist=4)"
    assert kinds["PCA4,IVF4,Flat"] == "IndexPreTransform(IndexIVFFlat(nlist=4))"
    assert kinds["HNSW8"] == "IndexIDMap2(IndexHNSWFlat)"


# --------------------------------------------------------------------------- save, load, merge


@pytest.mark.parametrize("factory", [None, "IVF4,Flat"])
def test_empty_indexes_round_trip(tmp_path, factory):
    index = EmbeddingIndex.create(DIM, factory, device="cpu")
    index.train(_vectors(100))
    index.save(tmp_path / "empty")
    loaded = EmbeddingIndex.load(tmp_path / "empty", device="cpu")
    assert len(loaded) == 0 and loaded.is_trained
    vectors, ids = (loaded.export_vectors() if factory is None else (np.empty((0, DIM)), np.empty(0)))
    assert vectors.shape == (0, DIM) and len(ids) == 0
    loaded.add(_vectors(3), show_progress=False)
    assert len(loaded) == 3


def test_load_names_the_model_and_dimension_it_expected(tmp_path):
    index = EmbeddingIndex.create(DIM, model_checksum="aaaa1111", model_config={"backbone": "tiny"},
                                  extra={"build_command": "indexer build --out X"}, device="cpu")
    index.add(_vectors(2), show_progress=False)
    index.save(tmp_path / "ix")
    with pytest.raises(IndexMismatchError) as exc:
        EmbeddingIndex.load(tmp_path / "ix", expected_model_checksum="bbbb2222", device="cpu")
    text = str(exc.value)
    for part in ("built by model aaaa1111", '(config {"backbone": "tiny"})', "not by the current model bbbb2222",
                 "rebuild it with the current model: run `indexer build --out X`"):
        assert part in text, (part, text)
    with pytest.raises(IndexMismatchError) as exc:
        EmbeddingIndex.load(tmp_path / "ix", expected_dim=16, device="cpu")
    assert "holds 8-d embeddings (model aaaa1111) but the current model makes 16-d ones" in str(exc.value)
    assert EmbeddingIndex.load(tmp_path / "ix", expected_model_checksum="aaaa1111", expected_dim=8, device="cpu").ntotal == 2

    anonymous = EmbeddingIndex.create(DIM, device="cpu")
    anonymous.add(_vectors(1), show_progress=False)
    anonymous.save(tmp_path / "anon")
    with pytest.raises(IndexMismatchError, match=r"built by model \(unrecorded\).*run `indexer build`"):
        EmbeddingIndex.load(tmp_path / "anon", expected_model_checksum="cccc", device="cpu")


def _shard(tmp_path, name, vectors, meta, base=None, factory=None, checksum="m"):
    index = base.empty_copy() if base is not None else EmbeddingIndex.create(DIM, factory, model_checksum=checksum, device="cpu")
    if not index.is_trained:
        index.train(_vectors(300, seed=42))
    index.add(vectors, meta, show_progress=False)
    return index.save(tmp_path / name)


def test_merge_renumbers_ids_past_each_shard_and_keeps_rows_with_vectors(tmp_path, capsys):
    a = EmbeddingIndex.create(DIM, model_checksum="m", device="cpu")
    xa = _vectors(3, seed=1)
    a.add(xa, _meta(3), show_progress=False)
    a.remove_ids([1])  # a's id space is 0..2 even though 1 is gone
    a.save(tmp_path / "a")
    xb, xc = _vectors(2, seed=2), _vectors(1, seed=3)
    b = _shard(tmp_path, "b", xb, _meta(2, start=10))
    c = _shard(tmp_path, "c", xc, _meta(1, start=20))
    merged = merge([tmp_path / "a", b, c], tmp_path / "m", device="cpu")
    assert "merging shards" in capsys.readouterr().err  # three or more shards show progress
    assert merged.ids.tolist() == [0, 2, 3, 4, 5]
    assert merged.metadata["item_id"].tolist() == ["item0", "item2", "item10", "item11", "item20"]
    for vector, item in ((xa[2], "item2"), (xb[1], "item11"), (xc[0], "item20")):
        assert merged.search(vector, k=1).rows["item_id"].tolist() == [item]
    assert merged.add(_vectors(1, seed=9), show_progress=False).tolist() == [6]
    loaded = EmbeddingIndex.load(tmp_path / "m", device="cpu")
    assert loaded.ids.tolist() == [0, 2, 3, 4, 5]
    assert loaded.info()["extra"]["merged_from"] == [str((tmp_path / d).absolute()) for d in ("a", "b", "c")]
    merge([tmp_path / "a", b], tmp_path / "m2", device="cpu")
    assert "merging shards" not in capsys.readouterr().err


def test_merge_refusals(tmp_path):
    with pytest.raises(ValueError, match="merge needs at least one index directory"):
        merge([], tmp_path / "out")
    a = _shard(tmp_path, "a", _vectors(2), _meta(2), checksum="m1")
    other_model = _shard(tmp_path, "b", _vectors(2, seed=1), _meta(2), checksum="m2")
    with pytest.raises(IndexMismatchError, match=r"cannot merge: .*b was built by model m2, .*a by m1"):
        merge([a, other_model], tmp_path / "out")
    ivf = _shard(tmp_path, "c", _vectors(2, seed=1), _meta(2), factory="IVF4,Flat", checksum="m1")
    with pytest.raises(IndexMismatchError, match=r"cannot merge: .*c is 'IVF4,Flat'/ip, .*a is 'Flat'/ip"):
        merge([a, ivf], tmp_path / "out")
    l2 = EmbeddingIndex.create(DIM, metric="l2", model_checksum="m1", device="cpu")
    l2.add(_vectors(1), show_progress=False)
    with pytest.raises(IndexMismatchError, match="'Flat'/l2"):
        merge([a, l2.save(tmp_path / "l2")], tmp_path / "out")


@pytest.mark.parametrize("factory", ["IVF4,Flat", "IVF4,PQ2x4", "IVF4,SQ8", "PCA4,IVF4,Flat"])
def test_ivf_shards_of_one_trained_index_merge_and_others_do_not(tmp_path, factory):
    base = EmbeddingIndex.create(DIM, factory, model_checksum="m", device="cpu")
    base.train(_vectors(300, seed=42))
    x = _vectors(40, seed=5)
    s0 = _shard(tmp_path, "s0", x[:25], _meta(25), base=base)
    s1 = _shard(tmp_path, "s1", x[25:], _meta(15, start=25), base=base)
    merged = merge([s0, s1], tmp_path / "m", device="cpu")
    assert len(merged) == 40 and merged.ids.tolist() == list(range(40))
    merged.nprobe = 4
    found = merged.search(x[30], k=1).rows["item_id"].tolist()
    assert found == ["item30"]
    own = EmbeddingIndex.create(DIM, factory, model_checksum="m", device="cpu")
    own.train(_vectors(300, seed=43))
    own.add(x[:3], show_progress=False)
    with pytest.raises(IndexMismatchError, match="trained separately"):
        merge([s0, own.save(tmp_path / "own")], tmp_path / "bad", device="cpu")


# ------------------------------------------------------------------------ simulated GPU routing


class _FakeGpuIndex:
    def __init__(self, index):
        self.index = faiss.clone_index(index)
        self.searches = []

    def search(self, q, k):
        self.searches.append(k)
        return self.index.search(q, k)


@pytest.fixture
def fake_gpu(monkeypatch):
    state = {"copies": [], "params": [], "fail": False}

    resources = object()

    def to_gpu(given, device, index):
        assert given is resources and device == 0, "the copy goes to GPU 0 with the StandardGpuResources made for it"
        if state["fail"]:
            raise RuntimeError("not supported on GPU")
        state["copies"].append(_FakeGpuIndex(index))
        return state["copies"][-1]

    class _Params:
        def set_index_parameter(self, index, name, value):
            state["params"].append((name, value))

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: resources, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu)
    monkeypatch.setattr(faiss, "GpuParameterSpace", _Params, raising=False)
    return state


def test_gpu_copy_is_used_refreshed_and_given_nprobe(fake_gpu):
    on_cpu = EmbeddingIndex.create(DIM, device="cpu")
    assert on_cpu.device == "cpu" and on_cpu.empty_copy().device == "cpu"
    index = EmbeddingIndex.create(DIM, "IVF4,Flat", device="cuda")
    assert index.device == "cuda" and index.info()["device"] == "cuda"
    x = _vectors(200)
    index.train(x)
    index.add(x, show_progress=False)
    index.nprobe = 4
    assert index.search(x[:2], k=3).ids[0][0] == 0
    assert len(fake_gpu["copies"]) == 1 and fake_gpu["copies"][0].searches == [3]
    assert fake_gpu["params"] == [("nprobe", 4)]
    index.search(x[:2], k=3, nprobe=2)
    assert fake_gpu["params"][-1] == ("nprobe", 2) and len(fake_gpu["copies"]) == 1
    index.search(x[:1], k=2, nprobe=store.GPU_MAX_K + 1)  # clamped to nlist = 4, so still on the GPU
    assert fake_gpu["copies"][0].searches == [3, 3, 2] and fake_gpu["params"][-1] == ("nprobe", 4)
    index.remove_ids([0])
    assert index.search(x[:1], k=1).ids[0][0] != 0 and len(fake_gpu["copies"]) == 2
    index.nprobe = 2  # a new default: a fresh copy
    index.search(x[:1], k=1)
    assert len(fake_gpu["copies"]) == 3


def test_index_the_gpu_cannot_hold_is_searched_on_the_cpu_with_one_warning(fake_gpu):
    fake_gpu["fail"] = True
    index = EmbeddingIndex.create(DIM, device="cuda")
    x = _vectors(20)
    index.add(x, show_progress=False)
    with pytest.warns(UserWarning, match="cannot search a IndexIDMap2\\(IndexFlatIP\\) index on the GPU"):
        assert index.search(x[:1], k=1).ids[0].tolist() == [0]
    fake_gpu["fail"] = False
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert index.search(x[1:2], k=1).ids[0].tolist() == [1]
    assert fake_gpu["copies"] == [], "no second attempt after the GPU refused the index"


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    with pytest.raises(IndexDeviceError, match=r"the cuda device was asked for but FAISS sees no GPU.*use the cpu or auto device"):
        EmbeddingIndex.create(DIM, device="cuda")
    assert EmbeddingIndex.create(DIM).device == "cpu"


# ------------------------------------------------------------------ searches restricted to some ids


@pytest.mark.parametrize("factory", [None, "IVF4,Flat"])
def test_search_inside_allowed_ids(factory):
    index = EmbeddingIndex.create(DIM, factory, device="cpu")
    x = _vectors(120)
    index.train(x)
    index.add(x, _meta(120), show_progress=False)
    if factory:
        index.nprobe = 1
    allowed = [5, 17, 17, 40, 99]
    for given in (allowed, np.array(allowed), torch.tensor(allowed), np.array([allowed[:3], allowed[2:]])):
        result = index.search(x[40], k=10, nprobe=4 if factory else None, allowed_ids=given)
        found = result.ids[0].tolist()
        assert found[0] == 40 and sorted(found) == [5, 17, 40, 99], found  # k clamped to the 4 distinct ids
        assert set(result.rows["item_id"]) == {"item5", "item17", "item40", "item99"}
    cosines = x[[5, 17, 40, 99]] @ x[40]
    np.testing.assert_allclose(sorted(index.search(x[40], k=4, allowed_ids=allowed, nprobe=4 if factory else None).scores[0]),
                               sorted(cosines), rtol=1e-5)
    nothing = index.search(x[:2], k=3, allowed_ids=[])
    assert [len(i) for i in nothing.ids] == [0, 0] and [len(s) for s in nothing.scores] == [0, 0] and len(nothing.rows) == 0
    assert index.search(x[3], k=2).ids[0][0] == 3  # no restriction: everything


def test_unsaved_changes_and_ids_over_several_updates(tmp_path):
    index = EmbeddingIndex.create(DIM, device="cpu")
    assert index.unsaved_changes == 0
    assert index.add(_vectors(2), show_progress=False).tolist() == [0, 1] and index.unsaved_changes == 1
    assert index.add(_vectors(3, seed=1), show_progress=False).tolist() == [2, 3, 4] and index.unsaved_changes == 2
    assert index.add(_vectors(1, seed=2), show_progress=False).tolist() == [5]
    index.remove_ids([1])
    assert index.unsaved_changes == 4
    index.remove_ids([1, 77])  # nothing removed: no change
    assert index.unsaved_changes == 4
    index.save(tmp_path / "ix")
    assert index.unsaved_changes == 0
    loaded = EmbeddingIndex.load(tmp_path / "ix", device="cpu")
    assert loaded.unsaved_changes == 0 and loaded.add(_vectors(1, seed=3), show_progress=False).tolist() == [6]
    ivf = EmbeddingIndex.create(DIM, "IVF4,Flat", device="cpu")
    ivf.train(_vectors(50))
    assert ivf.unsaved_changes == 1


def test_a_failure_in_the_first_batch_reports_that_failure(monkeypatch):
    index = EmbeddingIndex.create(DIM, device="cpu")
    monkeypatch.setattr(store, "_ADD_BATCH", 2)

    def broken(self, x, ids):
        raise RuntimeError("disk full")

    monkeypatch.setattr(faiss.IndexIDMap2, "add_with_ids", broken)
    with pytest.raises(RuntimeError, match="^disk full$"):
        index.add(_vectors(5), show_progress=False)
    assert len(index) == 0 and index.unsaved_changes == 0


def test_tensors_that_require_grad_are_accepted_everywhere():
    x = torch.from_numpy(_vectors(60)).requires_grad_(True)
    index = EmbeddingIndex.create(DIM, "IVF2,Flat", device="cpu")
    index.train(x)
    index.add(x, show_progress=False)
    assert index.search(x[:1], k=1).ids[0].tolist() == [0]


def test_remove_where_leaves_rows_with_a_missing_value():
    index = EmbeddingIndex.create(DIM, device="cpu")
    index.add(_vectors(3), pd.DataFrame({"clothes_type": pd.array([1, None, 2], dtype="Int64")}), show_progress=False)
    assert index.remove_where("clothes_type", 1).tolist() == [0]
    assert index.ids.tolist() == [1, 2]


def test_exact_sentences_of_index_errors(monkeypatch):
    with pytest.raises(ValueError, match=r"drop the IDMap prefix$"):
        EmbeddingIndex.create(DIM, "IDMap,IVF4,Flat")
    flat = EmbeddingIndex.create(DIM, device="cpu")
    flat.add(_vectors(1), show_progress=False)
    with pytest.raises(ValueError, match="^the index already holds vectors; train it before adding any$"):
        flat.train(_vectors(3))
    with pytest.raises(ValueError, match="^merge needs at least one index directory$"):
        merge([], "unused")
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    with pytest.raises(IndexDeviceError, match=r"^the cuda device was asked for but FAISS sees no GPU \(a CPU-only FAISS build, "
                                               r"or no CUDA device\); use the cpu or auto device$"):
        EmbeddingIndex.create(DIM, device="cuda")


def test_hnsw_memory_estimate_counts_its_level0_links():
    # HNSW8 keeps 2 x 8 = 16 links of 4 bytes per vector on level 0, plus a little for upper levels.
    estimates = {}
    for factory in (None, "HNSW8", "IDMap,Flat"):
        index = EmbeddingIndex.create(DIM, factory, device="cpu")
        index.add(_vectors(50), show_progress=False)
        estimates[factory] = index.info()["bytes_per_vector_estimate"]
    assert 4 * 16 <= estimates["HNSW8"] - estimates[None] <= 4 * 16 * 1.25
    assert 4 * DIM + 8 <= estimates["IDMap,Flat"] <= estimates[None]  # no reverse map: smaller than IDMap2


def test_merge_options(tmp_path, capsys):
    a = _shard(tmp_path, "a", _vectors(2), _meta(2), checksum="m1")
    b = _shard(tmp_path, "b", _vectors(2, seed=1), _meta(2, start=2), checksum="m1")
    with pytest.raises(IndexMismatchError, match="built by model m1"):
        merge([a, b], tmp_path / "out", expected_model_checksum="m9", device="cpu")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="other"):
        merge([a, b], other, device="cpu")  # a folder of other files is refused unless forced
    assert (other / "notes.txt").read_text() == "mine"
    merged = merge([a, b], other, device="cpu", force=True)
    assert len(merged) == 4 and (other / "notes.txt").read_text() == "mine"
    wide = EmbeddingIndex.create(16, model_checksum="m1", device="cpu")
    wide.add(_vectors(1, dim=16), show_progress=False)
    with pytest.raises(IndexMismatchError, match="holds 16-d embeddings"):
        merge([a, wide.save(tmp_path / "wide")], tmp_path / "out2", device="cpu")
    anonymous = EmbeddingIndex.create(DIM, device="cpu")
    anonymous.add(_vectors(1), show_progress=False)
    with pytest.raises(IndexMismatchError, match=r"was built by model \(unrecorded\), .* by m1;"):
        merge([a, anonymous.save(tmp_path / "anon")], tmp_path / "out3", device="cpu")
    with pytest.raises(IndexMismatchError, match=r"by \(unrecorded\); rebuild the shards with one model$"):
        merge([tmp_path / "anon", a], tmp_path / "out4", device="cpu")
    capsys.readouterr()
    merge([a, b, a], tmp_path / "three", device="cpu")
    err = capsys.readouterr().err
    assert re.search(r"(^|[\r\n])merging shards:", err), err
    assert "shard/s" in err or "s/shard" in err
