"""EmbeddingIndex: real FAISS indexes in tmp_path, small enough to stay fast."""

import json
import threading
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest

import fashionnet
from indexer import store
from indexer.errors import IndexDeviceError, IndexLoadError, IndexMismatchError, IndexSaveError
from indexer.layout import live_data_file, sha256_file
from indexer.store import EmbeddingIndex
from indexer.updates import merge

DIM = 16


def _vectors(n, seed=0, clusters=None):
    """L2-normalised vectors; with ``clusters``, a gaussian mixture so IVF lists are meaningful."""
    rng = np.random.default_rng(seed)
    if clusters:
        centers = rng.normal(size=(clusters, DIM))
        x = centers[rng.integers(0, clusters, size=n)] + 0.3 * rng.normal(size=(n, DIM))
    else:
        x = rng.normal(size=(n, DIM))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _metadata(n, start=0):
    return pd.DataFrame({"item_id": [f"id_{(start + i) // 4:08d}" for i in range(n)], "tag": np.arange(start, start + n)})


def _flat(n=120, seed=0, **kwargs):
    index = EmbeddingIndex.create(DIM, model_checksum="sha256:aaa", model_config={"backbone": "vgg16"}, device="cpu", **kwargs)
    x = _vectors(n, seed)
    index.add(x, _metadata(n))
    return index, x


def test_round_trip_top1_is_itself(tmp_path):
    index, x = _flat(extra={"image_size": 224})
    index.save(tmp_path / "ix")
    loaded = EmbeddingIndex.load(tmp_path / "ix", expected_model_checksum="sha256:aaa", expected_dim=DIM, device="cpu")
    scores, ids, rows = loaded.search(x, k=3)
    assert [i[0] for i in ids] == list(range(len(x)))
    assert np.allclose([s[0] for s in scores], 1.0, atol=1e-5)
    top1 = rows[rows["rank"] == 1]
    assert list(top1["tag"]) == list(range(len(x)))  # the metadata row follows its vector
    assert list(top1["query"]) == list(range(len(x)))
    assert set(rows.columns) >= {"query", "rank", "score", "id", "item_id", "tag"}

    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert manifest["count"] == len(x) and manifest["embedding_dim"] == DIM and manifest["metric"] == "ip"
    assert manifest["model_checksum"] == "sha256:aaa" and manifest["model_config"] == {"backbone": "vgg16"}
    assert manifest["package_version"] == fashionnet.__version__
    assert manifest["created_utc"].endswith("+00:00") and manifest["extra"]["image_size"] == 224
    assert loaded.info()["count"] == len(x) and loaded.info()["index_file_bytes"] > 0


def test_k_is_clamped_and_no_minus_one_leaks():
    index, x = _flat(n=5)
    scores, ids, rows = index.search(x[:2], k=50)
    assert [len(i) for i in ids] == [5, 5]
    assert all((i >= 0).all() for i in ids) and (rows["id"] >= 0).all()
    assert len(rows) == 10


def test_rows_with_chosen_columns_and_metadata_of_ids_follow_their_vectors():
    index, x = _flat(n=12)
    full = index.search(x[:2], k=4).rows
    light = index.search(x[:2], k=4, columns=("item_id", "no_such_column")).rows
    assert list(light.columns) == ["query", "rank", "score", "id", "item_id"]
    pd.testing.assert_frame_equal(light, full[list(light.columns)])
    ids = np.array([7, 2, 11])
    rows = index.metadata_of(ids)
    assert list(rows["tag"]) == [7, 2, 11] and list(rows["item_id"]) == [f"id_{i // 4:08d}" for i in ids]
    index.remove_ids([2])
    assert index.metadata_of([7, 2])["tag"].isna().tolist() == [False, True]


def test_remove_and_readd_keep_ids_and_metadata_consistent(tmp_path):
    index, x = _flat(n=40)
    removed = index.remove_where("item_id", "id_00000002")  # rows 8..11
    assert sorted(removed) == [8, 9, 10, 11]
    assert index.remove_ids([0, 0, 999]) == 1  # duplicates and unknown ids are ignored
    assert len(index) == 35 and len(index.metadata) == 35
    _, ids, rows = index.search(x, k=35)
    returned = set(rows["id"])
    assert returned.isdisjoint({0, 8, 9, 10, 11})
    # Every returned row still describes its own vector: tag == id for the original rows.
    assert (rows["tag"] == rows["id"]).all()

    index.save(tmp_path / "ix")
    index = EmbeddingIndex.load(tmp_path / "ix", device="cpu")
    new_ids = index.add(x[8:12], _metadata(4, start=100))
    assert list(new_ids) == [40, 41, 42, 43]  # never reuses a removed id, also after a reload
    _, ids, rows = index.search(x[8:12], k=1)
    assert [i[0] for i in ids] == [40, 41, 42, 43]
    assert list(rows["tag"]) == [100, 101, 102, 103]


def test_ivf_factory_and_nprobe(tmp_path):
    x = _vectors(800, seed=1, clusters=16)
    queries = _vectors(30, seed=2, clusters=16)
    exact = EmbeddingIndex.create(DIM, device="cpu")
    exact.add(x)
    ivf = EmbeddingIndex.create(DIM, "IVF16,Flat", device="cpu")
    with pytest.raises(ValueError, match="train"):
        ivf.add(x)
    ivf.train(x, max_train=500)
    ivf.add(x, _metadata(len(x)))
    _, exact_ids, _ = exact.search(queries, k=10)
    _, all_lists, _ = ivf.search(queries, k=10, nprobe=16)  # every list visited -> exact
    assert all(np.array_equal(a, b) for a, b in zip(all_lists, exact_ids))
    _, one_list, _ = ivf.search(queries, k=10, nprobe=1)
    recall_one = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(one_list, exact_ids)])
    assert recall_one < 1.0  # nprobe really changes the search

    ivf.nprobe = 16  # the default is stored in the index file
    ivf.save(tmp_path / "ivf")
    loaded = EmbeddingIndex.load(tmp_path / "ivf", device="cpu")
    assert loaded.nprobe == 16 and loaded.info()["nlist"] == 16
    _, reloaded, _ = loaded.search(queries, k=10)
    assert all(np.array_equal(a, b) for a, b in zip(reloaded, exact_ids))
    loaded.remove_ids(exact_ids[0][:3])
    assert set(loaded.search(queries[:1], k=10, nprobe=16).ids[0]).isdisjoint(exact_ids[0][:3])
    with pytest.raises(ValueError, match="nprobe"):
        exact.search(queries, k=5, nprobe=4)


@pytest.mark.parametrize("factory", ["HNSW8", "IVF4,Flat,RFlat"])
def test_indexes_without_removal_are_rebuilt(factory):
    index = EmbeddingIndex.create(DIM, factory, device="cpu")
    x = _vectors(60)
    index.train(x)
    index.add(x, _metadata(60))
    assert index.remove_ids([5, 6]) == 2  # neither can delete in place; the store rebuilds from kept vectors
    _, ids, rows = index.search(x, k=1)
    assert [i[0] for i in ids][:5] == [0, 1, 2, 3, 4]
    assert not {5, 6} & set(rows["id"]) and (rows["tag"] == rows["id"]).all()


def test_failed_save_leaves_previous_index_intact(tmp_path, monkeypatch):
    index, x = _flat(n=30)
    index.save(tmp_path / "ix")
    before = live_data_file(tmp_path / "ix", "index.faiss").read_bytes()
    index.add(_vectors(10, seed=5))

    def broken_write(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(faiss, "write_index", broken_write)
    with pytest.raises(IndexSaveError, match="disk full"):
        index.save(tmp_path / "ix")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]  # no staging left behind
    assert live_data_file(tmp_path / "ix", "index.faiss").read_bytes() == before
    assert len(EmbeddingIndex.load(tmp_path / "ix", device="cpu")) == 30
    index.save(tmp_path / "ix")  # a later save replaces it
    assert len(EmbeddingIndex.load(tmp_path / "ix", device="cpu")) == 40


def test_save_refuses_to_replace_a_foreign_directory(tmp_path):
    index, _ = _flat(n=3)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "me.jpg").write_bytes(b"x")
    with pytest.raises(IndexSaveError, match="is not empty.*me.jpg.*not an index"):
        index.save(tmp_path / "photos")
    assert (tmp_path / "photos" / "me.jpg").exists()


def _rerecord(directory: Path, name: str):
    """Update the manifest's size/checksum of a file we altered on purpose, to reach later checks."""
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"][name] = {"bytes": live_data_file(directory, name).stat().st_size, "sha256": sha256_file(live_data_file(directory, name))}
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_damaged_or_incomplete_directories_give_load_errors(tmp_path):
    index, _ = _flat(n=20)
    good = tmp_path / "ix"
    index.save(good)

    with pytest.raises(IndexLoadError, match="does not exist"):
        EmbeddingIndex.load(tmp_path / "nowhere")

    damaged = tmp_path / "damaged"
    index.save(damaged)
    data = bytearray(live_data_file(damaged, "index.faiss").read_bytes())
    data[-50] ^= 0xFF  # same size, one byte flipped
    live_data_file(damaged, "index.faiss").write_bytes(bytes(data))
    with pytest.raises(IndexLoadError, match=r"damaged.*index\.faiss|index\.faiss.*damaged"):
        EmbeddingIndex.load(damaged)

    live_data_file(damaged, "index.faiss").write_bytes(b"not a faiss index at all")
    _rerecord(damaged, "index.faiss")  # the checksum now matches: FAISS itself must refuse it
    with pytest.raises(IndexLoadError, match="cannot be read by FAISS"):
        EmbeddingIndex.load(damaged)

    no_manifest = tmp_path / "no_manifest"
    index.save(no_manifest)
    (no_manifest / "manifest.json").unlink()
    with pytest.raises(IndexLoadError, match="manifest.json is missing"):
        EmbeddingIndex.load(no_manifest)

    bad_manifest = tmp_path / "bad_manifest"
    index.save(bad_manifest)
    (bad_manifest / "manifest.json").write_text("{ truncated")
    with pytest.raises(IndexLoadError, match="manifest.json cannot be read"):
        EmbeddingIndex.load(bad_manifest)

    short_metadata = tmp_path / "short_metadata"
    index.save(short_metadata)
    metadata_file = live_data_file(short_metadata, "metadata.parquet")
    pd.read_parquet(metadata_file).iloc[:-1].to_parquet(metadata_file, index=False)
    _rerecord(short_metadata, "metadata.parquet")
    with pytest.raises(IndexLoadError, match="inconsistent.*20 vectors.*19 rows"):
        EmbeddingIndex.load(short_metadata)

    assert len(EmbeddingIndex.load(good, device="cpu")) == 20


def test_model_or_dim_mismatch_says_what_built_it(tmp_path):
    index, _ = _flat(n=5, extra={"build_command": "indexer build --data data/synth"})
    index.save(tmp_path / "ix")
    with pytest.raises(IndexMismatchError, match=r"built by model sha256:aaa.*vgg16.*sha256:bbb.*indexer build --data"):
        EmbeddingIndex.load(tmp_path / "ix", expected_model_checksum="sha256:bbb")
    with pytest.raises(IndexMismatchError, match=f"{DIM}-d.*makes 512-d"):
        EmbeddingIndex.load(tmp_path / "ix", expected_dim=512)


def test_merge_flat_shards_equals_one_index(tmp_path):
    x = _vectors(90, seed=7)
    queries = _vectors(12, seed=8)
    whole = EmbeddingIndex.create(DIM, model_checksum="m1", device="cpu")
    whole.add(x, _metadata(90))
    for name, part in (("a", slice(0, 50)), ("b", slice(50, 90))):
        shard = EmbeddingIndex.create(DIM, model_checksum="m1", device="cpu")
        shard.add(x[part], _metadata(90).iloc[part])
        shard.save(tmp_path / name)
    merged = merge([tmp_path / "a", tmp_path / "b"], tmp_path / "merged", device="cpu")
    reloaded = EmbeddingIndex.load(tmp_path / "merged", device="cpu")
    expected = whole.search(queries, k=10).rows
    for result in (merged.search(queries, k=10).rows, reloaded.search(queries, k=10).rows):
        assert list(result["tag"]) == list(expected["tag"])
        assert np.allclose(result["score"], expected["score"], atol=1e-6)
        assert list(result["id"]) == list(result["tag"])  # renumbered ids follow the concatenated metadata


def test_merge_ivf_shards_equals_one_index(tmp_path):
    x = _vectors(640, seed=9, clusters=8)
    queries = _vectors(20, seed=10, clusters=8)
    trained = EmbeddingIndex.create(DIM, "IVF8,Flat", model_checksum="m1", device="cpu")
    trained.train(x)
    whole = trained.empty_copy()
    whole.add(x, _metadata(640))
    for name, part in (("a", slice(0, 300)), ("b", slice(300, 640))):
        shard = trained.empty_copy()
        shard.add(x[part], _metadata(640).iloc[part])
        if name == "a":
            shard.remove_ids([3])  # a gap in shard a's ids must not shift shard b's rows
        shard.save(tmp_path / name)
    whole.remove_ids([3])
    merge([tmp_path / "a", tmp_path / "b"], tmp_path / "merged", device="cpu")
    merged = EmbeddingIndex.load(tmp_path / "merged", device="cpu")
    assert len(merged) == 639
    for nprobe in (2, 8):
        expected = whole.search(queries, k=15, nprobe=nprobe).rows
        got = merged.search(queries, k=15, nprobe=nprobe).rows
        assert list(got["tag"]) == list(expected["tag"])
        assert np.allclose(got["score"], expected["score"], atol=1e-6)

    separately = EmbeddingIndex.create(DIM, "IVF8,Flat", model_checksum="m1", device="cpu")
    separately.train(_vectors(640, seed=11, clusters=8))
    separately.add(x[:10])
    separately.save(tmp_path / "c")
    with pytest.raises(IndexMismatchError, match="trained separately"):
        merge([tmp_path / "a", tmp_path / "c"], tmp_path / "bad", device="cpu")
    other_model = EmbeddingIndex.create(DIM, model_checksum="m2", device="cpu")
    other_model.add(x[:3])
    other_model.save(tmp_path / "d")
    with pytest.raises(IndexMismatchError, match="m2"):
        merge([tmp_path / "a", tmp_path / "d"], tmp_path / "bad", device="cpu")
    assert not (tmp_path / "bad").exists()


def test_concurrent_searches_agree_with_serial():
    index, x = _flat(n=200)
    expected = [index.search(x[i : i + 1], k=5).ids[0] for i in range(40)]
    results = {}

    def worker(offset):
        for i in range(offset, 40, 4):
            results[i] = index.search(x[i : i + 1], k=5).ids[0]

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(results[i], expected[i]) for i in range(40))


class _RecordingGpuCopy:
    """Stands in for a GPU index: a CPU clone that records the searches it serves."""

    def __init__(self, index):
        self.index = faiss.clone_index(index)
        self.calls = []

    def search(self, q, k):
        self.calls.append(k)
        return self.index.search(q, k)


def test_gpu_routing_with_a_simulated_gpu(tmp_path, monkeypatch):
    """Routing only (runs on CPU): small k on the GPU copy, k > 2048 on the CPU index, saves from the CPU index."""
    copies = []

    def fake_cpu_to_gpu(resources, device, index):
        copies.append(_RecordingGpuCopy(index))
        return copies[-1]

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: object(), raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", fake_cpu_to_gpu)
    index = EmbeddingIndex.create(DIM)  # device="auto" picks the GPU
    assert index.device == "cuda"
    x = _vectors(2100)
    index.add(x)
    _, ids, _ = index.search(x[:2], k=5)
    assert [i[0] for i in ids] == [0, 1] and copies[-1].calls == [5]
    _, ids, _ = index.search(x[:2], k=2100)  # above the GPU limit -> CPU
    assert [len(i) for i in ids] == [2100, 2100] and copies[-1].calls == [5]
    index.add(_vectors(1, seed=4))  # a change makes a fresh GPU copy on the next search
    index.search(x[:1], k=1)
    assert len(copies) == 2 and copies[-1].index.ntotal == 2101

    written = []
    real_write = faiss.write_index
    monkeypatch.setattr(faiss, "write_index", lambda idx, path: (written.append(idx), real_write(idx, path)))
    index.save(tmp_path / "ix")
    assert isinstance(written[0], faiss.Index) and not isinstance(written[0], _RecordingGpuCopy)

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    with pytest.raises(IndexDeviceError, match="no GPU"):
        EmbeddingIndex.create(DIM, device="cuda")
    assert EmbeddingIndex.create(DIM, device="auto").device == "cpu"


def _gpu_available():
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_available(), reason="needs a CUDA GPU visible to FAISS")
def test_gpu_search_matches_cpu(tmp_path):
    x = _vectors(5000, seed=12, clusters=32)
    queries = _vectors(50, seed=13, clusters=32)
    for factory in (None, "IVF32,Flat"):
        gpu = EmbeddingIndex.create(DIM, factory, device="cuda")
        gpu.train(x)
        gpu.add(x, _metadata(len(x)))
        gpu.save(tmp_path / "ix")
        cpu = EmbeddingIndex.load(tmp_path / "ix", device="cpu")  # saved as a CPU index
        assert cpu.device == "cpu" and gpu.device == "cuda"
        nprobe = 8 if factory else None
        g = gpu.search(queries, k=20, nprobe=nprobe)
        c = cpu.search(queries, k=20, nprobe=nprobe)
        assert gpu._gpu._index is not None  # the search really ran on the GPU copy
        overlap = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(g.ids, c.ids)])
        assert overlap > 0.99  # float summation order may swap near-ties
        assert np.allclose(np.concatenate(g.scores), np.concatenate(c.scores), atol=1e-4)
        big_g = gpu.search(queries[:2], k=3000, nprobe=nprobe)  # above GPU_MAX_K -> CPU copy
        big_c = cpu.search(queries[:2], k=3000, nprobe=nprobe)
        assert all(np.array_equal(a, b) for a, b in zip(big_g.ids, big_c.ids))
