"""Re-ranking a compressed (IVF-PQ) index's candidates from a memory-mapped vectors file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest

from indexer import layout
from indexer.cli import main as indexer
from indexer.errors import IndexLoadError
from indexer.rerank import IDS_FILE, VECTORS_FILE, Reranker, check_rerank
from indexer.store import EmbeddingIndex

DIM, N, K = 32, 20_000, 10
# 8-byte codes for 32-d vectors: a coarse index whose own ranking is poor. (Not a 4-bit fast-scan
# PQ: with FAISS 1.15 vectors added to a fast-scan list after a removal from it can be lost.)
FACTORY = "IVF64,PQ8np"  # np: no polysemous training, which takes long
REPO = Path(__file__).resolve().parents[1]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clustered gallery, queries near gallery items, and the exact top-K ids of each query."""
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((200, DIM))
    gallery = _unit(centers[rng.integers(0, 200, N)] + 0.5 * rng.standard_normal((N, DIM)))
    queries = _unit(gallery[rng.integers(0, N, 40)] + 0.2 * rng.standard_normal((40, DIM)))
    exact = np.argsort(-(queries @ gallery.T), axis=1, kind="stable")[:, :K]
    return gallery, queries, exact


_TRAINED: dict[str, faiss.Index] = {}


def _index(gallery: np.ndarray, rerank: str, factor: int = 20) -> EmbeddingIndex:
    """An IVF-PQ index of ``gallery`` re-ranking ``factor`` x k candidates (trained once per module)."""
    if "ivfpq" not in _TRAINED:
        trained = EmbeddingIndex.create(DIM, FACTORY, device="cpu")
        trained.train(gallery, max_train=5000, seed=0)
        _TRAINED["ivfpq"] = trained._index
    index = EmbeddingIndex(faiss.clone_index(_TRAINED["ivfpq"]), metric="ip", index_factory=FACTORY, device="cpu",
                           rerank=Reranker(rerank, factor, DIM))
    index.add(gallery, pd.DataFrame({"tag": np.arange(len(gallery))}), show_progress=False)
    index.nprobe = 64  # every list: the candidates' quality is down to the PQ codes alone
    return index


def _recall(found: list[np.ndarray], exact: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(e.tolist())) / exact.shape[1] for f, e in zip(found, exact)]))


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("rerank") / "ix"
    _index(data[0], "exact").save(directory)
    return directory


def test_reranked_search_returns_the_exact_top_k_with_exact_scores(data, saved):
    gallery, queries, exact = data
    index = EmbeddingIndex.load(saved, device="cpu")
    result = index.search(queries, K)
    candidates = EmbeddingIndex.load(saved, device="cpu")._search_locked(queries, K * 20, None, None)[1]  # what PQ proposed
    covered = [set(e.tolist()) <= set(c.tolist()) for e, c in zip(exact, candidates)]
    assert sum(covered) >= len(queries) // 2  # the check below must see many queries
    for q, ok in enumerate(covered):
        if ok:
            np.testing.assert_array_equal(result.ids[q], exact[q])
            np.testing.assert_allclose(result.scores[q], gallery[exact[q]] @ queries[q], rtol=1e-5)
    assert list(result.rows["tag"][:K]) == list(result.ids[0])  # metadata rows follow the re-ranked order


def test_rerank_recalls_more_than_the_codes_alone(data):
    gallery, queries, exact = data
    plain = _recall(_index(gallery, "none").search(queries, K).ids, exact)
    reranked = _recall(_index(gallery, "exact").search(queries, K).ids, exact)
    assert reranked >= plain and reranked >= 0.9, (reranked, plain)


def test_the_rerank_file_is_memory_mapped_and_in_the_version_folder(saved):
    index = EmbeddingIndex.load(saved, device="cpu")
    assert isinstance(index._rerank.rows, np.memmap)
    folder = layout.live_data_file(saved, VECTORS_FILE).parent
    assert (folder / layout.INDEX_FILE).is_file() and (folder / IDS_FILE).is_file()
    assert Path(index._rerank.rows.filename) == folder / VECTORS_FILE
    manifest = layout.read_manifest(saved)
    assert manifest["rerank"] == {"mode": "exact", "factor": 20}
    assert manifest["files"][VECTORS_FILE]["bytes"] == (folder / VECTORS_FILE).stat().st_size
    assert index.info()["rerank"] == {"mode": "exact", "factor": 20}


def test_save_load_round_trip_gives_the_same_results(data, tmp_path):
    gallery, queries, _ = data
    index = _index(gallery, "exact")
    index.save(tmp_path / "ix")  # the save maps the file it wrote
    before = index.search(queries, K)
    loaded = EmbeddingIndex.load(tmp_path / "ix", device="cpu")
    after = loaded.search(queries, K)
    assert loaded.nprobe == 64 and loaded._rerank.mode == "exact"
    for a, b in zip(before.ids, after.ids):
        np.testing.assert_array_equal(a, b)
    assert loaded._rerank.rows.dtype == np.float32


def test_an_index_saved_with_the_retired_sq8_reranker_is_refused_in_one_sentence(saved, tmp_path):
    import json
    import shutil

    directory = tmp_path / "sq8"
    shutil.copytree(saved, directory)
    manifest = json.loads((directory / layout.MANIFEST_FILE).read_text())
    manifest["rerank"]["mode"] = "sq8"
    (directory / layout.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(IndexLoadError, match=r"re-ranks with 8-bit \(sq8\) vectors, which this version no longer reads; "
                                             r"rebuild it with --rerank exact$"):
        EmbeddingIndex.load(directory, device="cpu")


def test_add_and_remove_keep_the_rerank_file_consistent(data, saved, tmp_path):
    gallery, queries, exact = data
    directory = tmp_path / "ix"
    EmbeddingIndex.load(saved, device="cpu").save(directory)
    index = EmbeddingIndex.load(directory, device="cpu")
    gone = np.unique(exact[:, 0])
    assert index.remove_ids(gone) == len(gone)
    new = _unit(gallery[[1, 2, 3]] + 0.3 * np.random.default_rng(5).standard_normal((3, DIM)))  # like the gallery
    new_ids = index.add(new, pd.DataFrame({"tag": [-1, -2, -3]}), show_progress=False)
    for round_trip in (False, True):
        if round_trip:
            index.save(directory)
            index = EmbeddingIndex.load(directory, device="cpu")
            assert len(np.load(layout.live_data_file(directory, IDS_FILE))) == N - len(gone) + 3
        found = index.search(queries, K)
        assert not np.isin(np.concatenate(found.ids), gone).any()  # a removed id never comes back
        hits = index.search(new, 1)
        np.testing.assert_array_equal(np.concatenate(hits.ids), new_ids)  # an added vector is found, as itself
        np.testing.assert_allclose(np.concatenate(hits.scores), 1.0, rtol=1e-5)


def test_vectors_added_after_a_removal_are_found_in_a_fast_scan_index(data):
    """FAISS 1.15 left removed 4-bit codes in freed fast-scan slots, corrupting later adds there."""
    gallery = data[0]
    index = EmbeddingIndex.create(DIM, "IVF64,PQ8x4fs", device="cpu", rerank="exact", rerank_factor=20)
    index.train(gallery, max_train=5000, seed=0)
    index.add(gallery, show_progress=False)
    index.nprobe = 64
    index.remove_ids(np.arange(100, 400))
    new = _unit(gallery[1:200] + 0.05 * np.random.default_rng(3).standard_normal((199, DIM)))
    new_ids = index.add(new, show_progress=False)
    found = np.concatenate(index.search(new, 1).ids)
    assert np.mean(found == new_ids) >= 0.9  # 0.18 before the fix


def test_filtered_search_is_reranked_within_the_allowed_ids(data, saved):
    gallery, queries, _ = data
    index = EmbeddingIndex.load(saved, device="cpu")
    allowed = np.arange(0, N, 7)
    result = index.search(queries[:5], K, allowed_ids=allowed)
    for q, ids in enumerate(result.ids):
        assert np.isin(ids, allowed).all()
        best = allowed[np.argsort(-(gallery[allowed] @ queries[q]), kind="stable")[:K]]
        assert _recall([ids], best[None, :]) >= 0.8


def test_a_missing_or_truncated_rerank_file_is_a_clear_load_error(saved, tmp_path):
    import shutil

    for damage in ("missing", "truncated"):
        directory = tmp_path / damage
        shutil.copytree(saved, directory)
        path = layout.live_data_file(directory, VECTORS_FILE)
        if damage == "missing":
            path.unlink()
        else:
            with open(path, "r+b") as f:
                f.truncate(path.stat().st_size - 4 * DIM)
        with pytest.raises(IndexLoadError, match="rerank_vectors.npy"):
            EmbeddingIndex.load(directory, device="cpu")


_KILLER = textwrap.dedent(
    """
    import os, shutil, sys
    import numpy as np, pandas as pd, faiss
    from indexer.store import EmbeddingIndex

    target, kill_at = sys.argv[1], int(sys.argv[2])
    steps = [0]

    def step(fn):
        def wrapped(*args, **kwargs):
            steps[0] += 1
            if steps[0] == kill_at:
                os._exit(137)
            return fn(*args, **kwargs)
        return wrapped

    for owner, name in [(os, "replace"), (os, "mkdir"), (os, "fsync"), (os, "unlink"), (shutil, "rmtree"),
                        (faiss, "write_index"), (np, "save"), (np.lib.format, "open_memmap")]:
        setattr(owner, name, step(getattr(owner, name)))
    pd.DataFrame.to_parquet = step(pd.DataFrame.to_parquet)

    index = EmbeddingIndex.load(target, device="cpu")
    index.add(np.random.default_rng(7).normal(size=(10, index.dim)).astype(np.float32), show_progress=False)
    index.save(target)
    """
)


@pytest.mark.slow
def test_a_killed_save_never_leaves_a_manifest_naming_a_missing_rerank_file(tmp_path):
    ix = tmp_path / "ix"
    rng = np.random.default_rng(1)
    first = EmbeddingIndex.create(8, "IVF4,PQ2np", device="cpu", rerank="exact", rerank_factor=5)
    first.train(rng.normal(size=(300, 8)), seed=0)
    first.add(rng.normal(size=(30, 8)), show_progress=False)
    first.save(ix)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    kill_at = 1
    while True:
        done = subprocess.run([sys.executable, "-c", _KILLER, str(ix), str(kill_at)], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode in (0, 137), done.stderr
        index = EmbeddingIndex.load(ix, device="cpu")  # a complete index, rerank file included
        assert len(index) in (30, 40)
        assert len(index._rerank.rows) == len(index)
        assert len(index.search(rng.normal(size=(2, 8)), 5).ids[0]) == 5
        if done.returncode == 0:
            break
        if len(index) != 30:  # the kill came after the commit: start the next kill point from 30 again
            index.remove_ids(index.ids[30:])
            index.save(ix)
        kill_at += 1
    assert kill_at >= 8, f"only {kill_at} steps were exercised"
    assert len(EmbeddingIndex.load(ix, device="cpu")) == 40


@pytest.mark.parametrize("mode, factor", [("bogus", 10), ("EXACT", 10), ("exact", 0), ("sq8", 10), ("exact", 2.5)])
def test_bad_rerank_settings_are_refused_with_a_clear_error(mode, factor):
    with pytest.raises(ValueError, match="rerank"):
        check_rerank(mode, factor)
    with pytest.raises(ValueError, match="rerank"):
        EmbeddingIndex.create(DIM, FACTORY, rerank=mode, rerank_factor=factor)
    with pytest.raises(ValueError, match="rerank"):
        Reranker(mode, factor, DIM)


def test_the_build_command_refuses_bad_rerank_flags_before_any_work(capsys, tmp_path):
    base = ["build", "--checkpoint", str(tmp_path / "no-such.pt"), "--images", str(tmp_path), "--out", str(tmp_path / "ix")]
    with pytest.raises(SystemExit):
        indexer(base + ["--rerank", "fast"])
    assert "invalid choice: 'fast'" in capsys.readouterr().err
    assert indexer(base + ["--rerank", "exact", "--rerank-factor", "0"]) == 2
    assert "--rerank-factor must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "ix").exists()


def test_merged_shards_rerank_the_vectors_of_both(tmp_path):
    x = _unit(np.random.default_rng(2).standard_normal((3000, 16)))
    trained = EmbeddingIndex.create(16, "IVF8,PQ4x4fs", device="cpu", rerank="exact", rerank_factor=10)
    trained.train(x, seed=0)
    for name, part in (("a", x[:1500]), ("b", x[1500:])):
        shard = trained.empty_copy()
        shard.add(part, show_progress=False)
        shard.save(tmp_path / name)
    merged = EmbeddingIndex.load(tmp_path / "a", device="cpu")
    merged.append_shard(EmbeddingIndex.load(tmp_path / "b", device="cpu"))
    merged.save(tmp_path / "merged")
    merged = EmbeddingIndex.load(tmp_path / "merged", device="cpu")
    merged.nprobe = 8
    probe = np.r_[0:10, 1500:1510]
    np.testing.assert_array_equal(np.concatenate(merged.search(x[probe], 1).ids), probe)
    np.testing.assert_allclose(np.concatenate(merged.search(x[probe], 1).scores), 1.0, rtol=1e-5)
    assert len(merged._rerank.rows) == 3000


def test_a_shard_without_rerank_vectors_is_refused_before_anything_is_merged():
    x = _unit(np.random.default_rng(2).standard_normal((600, 16)))
    target = EmbeddingIndex.create(16, "Flat", device="cpu", rerank="exact")
    target.add(x[:300], show_progress=False)
    plain = EmbeddingIndex.create(16, "Flat", device="cpu")
    plain.add(x[300:], show_progress=False)
    with pytest.raises(ValueError, match="without rerank vectors"):
        target.append_shard(plain)
    assert len(target) == 300 and len(target.search(x[:1], 5).ids[0]) == 5
