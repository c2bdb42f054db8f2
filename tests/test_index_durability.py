"""An index on disk survives crashes, concurrent writers and the user's own files beside it.

Kills are real: a child process is ended with os._exit at each file-system step of a save in turn,
and the parent checks what is left on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from indexer import layout
from indexer.errors import IndexLoadError, IndexSaveError
from indexer.store import EmbeddingIndex
from indexer.updates import locked_update

DIM = 8
REPO = Path(__file__).resolve().parents[1]


def _vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def _saved_index(directory: Path, n: int = 30, force: bool = False) -> EmbeddingIndex:
    index = EmbeddingIndex.create(DIM, device="cpu")
    index.add(_vectors(n, seed=0), pd.DataFrame({"tag": [f"v{i}" for i in range(n)]}))
    index.save(directory, force=force)
    return index


def _user_files(directory: Path) -> dict[str, bytes]:
    (directory / "README.txt").write_text("my notes about this index\n")
    (directory / "src").mkdir()
    (directory / "src" / "main.py").write_text("print('mine')\n")
    return {"README.txt": (directory / "README.txt").read_bytes(), "src/main.py": (directory / "src" / "main.py").read_bytes()}


def _assert_user_files(directory: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        assert (directory / name).read_bytes() == content, f"{name} was changed or deleted"


# ------------------------------------------------------------------------------- the user's files


def test_saves_keep_user_files_and_the_folder_mode(tmp_path):
    ix = tmp_path / "ix"
    index = _saved_index(ix)
    os.chmod(ix, 0o755)
    files = _user_files(ix)
    for i in range(3):  # several saves, so old versions get cleaned up
        index.add(_vectors(5, seed=10 + i))
        index.save(ix)
    _assert_user_files(ix, files)
    assert stat.S_IMODE(ix.stat().st_mode) == 0o755
    assert len(EmbeddingIndex.load(ix, device="cpu")) == 45
    assert len(list((ix / layout.VERSIONS_DIR).iterdir())) == 2  # the live version and the one before


def test_a_folder_of_other_files_is_refused_unless_forced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    files = _user_files(out)
    index = EmbeddingIndex.create(DIM, device="cpu")
    index.add(_vectors(4, seed=1))
    with pytest.raises(IndexSaveError, match=r"not empty \(README.txt, src\).*--force"):
        index.save(out)
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "src"]
    index.save(out, force=True)
    _assert_user_files(out, files)
    assert len(EmbeddingIndex.load(out, device="cpu")) == 4


def test_a_foreign_manifest_is_never_overwritten(tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    (out / "manifest.json").write_text('{"name": "my web app"}')
    files = _user_files(out)
    index = EmbeddingIndex.create(DIM, device="cpu")
    index.add(_vectors(4, seed=1))
    for force in (False, True):
        with pytest.raises(IndexSaveError, match="manifest.json that is not an index manifest"):
            index.save(out, force=force)
    assert json.loads((out / "manifest.json").read_text()) == {"name": "my web app"}
    _assert_user_files(out, files)


# ------------------------------------------------------------------------------------ crash safety

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
                os._exit(137)  # like kill -9: no cleanup, no finally blocks
            return fn(*args, **kwargs)
        return wrapped

    for owner, name in [(os, "replace"), (os, "rename"), (os, "mkdir"), (os, "fsync"), (os, "unlink"),
                        (os, "rmdir"), (shutil, "rmtree"), (faiss, "write_index")]:
        setattr(owner, name, step(getattr(owner, name)))
    pd.DataFrame.to_parquet = step(pd.DataFrame.to_parquet)

    index = EmbeddingIndex.load(target, device="cpu")
    index.add(np.random.default_rng(7).normal(size=(10, index.dim)).astype(np.float32))
    index.save(target)
    print("steps", steps[0])
    """
)


@pytest.mark.slow
def test_a_kill_at_any_step_of_a_save_leaves_the_old_or_the_new_index(tmp_path):
    ix = tmp_path / "ix"
    _saved_index(ix, n=30)
    _saved_index(ix, n=30)  # a second version, so a save also has an old version to delete
    files = _user_files(ix)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    counts = []
    kill_at = 1
    while True:
        done = subprocess.run([sys.executable, "-c", _KILLER, str(ix), str(kill_at)], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode in (0, 137), done.stderr
        index = EmbeddingIndex.load(ix, device="cpu")  # also cleans up what the killed save left
        counts.append(len(index))
        assert len(index) in (30, 40)  # the old index, or the new one when the kill came after the commit
        _assert_user_files(ix, files)
        leftovers = [p.name for p in ix.iterdir() if p.name.endswith(".tmp")]
        assert not leftovers and len(list((ix / layout.VERSIONS_DIR).iterdir())) <= 2
        if done.returncode == 0:
            break
        # a killed save changes nothing: reset to 30 vectors for the next kill point
        if len(index) != 30:
            shutil.rmtree(ix / layout.VERSIONS_DIR)
            (ix / "manifest.json").unlink()
            _saved_index(ix, n=30, force=True)
        kill_at += 1
    assert kill_at >= 8, f"only {kill_at} steps were exercised; the step hooks no longer see the save"
    assert counts[-1] == 40


def test_a_load_racing_saves_always_sees_a_complete_index(tmp_path):
    ix = tmp_path / "ix"
    index = _saved_index(ix, n=20)
    reader = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(
            """
            import sys, time
            from indexer.store import EmbeddingIndex
            loads, failures, end = 0, [], time.time() + 60
            while time.time() < end and loads < 300:
                try:
                    loads += len(EmbeddingIndex.load(sys.argv[1], device="cpu")) > 0
                except Exception as e:
                    failures.append(repr(e))
            print(loads, len(failures), failures[:3])
            """), str(ix)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    saves = 0
    while reader.poll() is None:
        index.add(_vectors(1, seed=saves))
        index.save(ix)
        saves += 1
    out, err = reader.communicate()
    loads, failures, examples = out.split(maxsplit=2)
    assert int(failures) == 0, examples
    assert int(loads) == 300 and saves > 10, (out, err)


def test_an_index_with_its_data_beside_the_manifest_loads_and_those_files_are_never_deleted(tmp_path):
    ix = tmp_path / "ix"
    _saved_index(ix, n=6)
    manifest = json.loads((ix / "manifest.json").read_text())
    for name in layout.DATA_FILES:  # a manifest without data_dir, its files beside it
        shutil.copy(layout.live_data_file(ix, name), ix / name)
    shutil.rmtree(ix / layout.VERSIONS_DIR)
    for key in ("data_dir", "previous_data_dir", "version"):
        manifest.pop(key)
    (ix / "manifest.json").write_text(json.dumps(manifest))
    flat = {name: (ix / name).read_bytes() for name in layout.DATA_FILES}

    index = EmbeddingIndex.load(ix, device="cpu")
    assert len(index) == 6
    index.add(_vectors(2, seed=3))
    for _ in range(3):  # the new versions go to versions/; the files beside the manifest stay
        index.save(ix)
    assert {name: (ix / name).read_bytes() for name in layout.DATA_FILES} == flat
    assert len(EmbeddingIndex.load(ix, device="cpu")) == 8


def test_missing_index_and_missing_data_give_clear_errors(tmp_path):
    with pytest.raises(IndexLoadError, match="no index at .*does not exist"):
        EmbeddingIndex.load(tmp_path / "nowhere")
    ix = tmp_path / "ix"
    _saved_index(ix, n=3)
    shutil.rmtree(ix / layout.VERSIONS_DIR)
    with pytest.raises(IndexLoadError, match=r"not a complete index: versions/\d+-[0-9a-f]+/index.faiss is missing"):
        EmbeddingIndex.load(ix)


# -------------------------------------------------------------------------------- concurrent writers

_ADDER = textwrap.dedent(
    """
    import sys
    import numpy as np, pandas as pd
    from indexer.updates import locked_update

    target, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for i in range(n):
        with locked_update(target) as index:
            index.add(np.random.default_rng(1000 * worker + i).normal(size=(1, index.dim)).astype(np.float32),
                      pd.DataFrame({"tag": [f"w{worker}-{i}"]}))
    """
)


@pytest.mark.parametrize("trial", range(5))
def test_concurrent_writers_all_land(tmp_path, trial):
    ix = tmp_path / "ix"
    _saved_index(ix, n=5)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [subprocess.Popen([sys.executable, "-c", _ADDER, str(ix), str(w), "20"], env=env, stderr=subprocess.PIPE, text=True)
               for w in range(4)]
    for w in workers:
        assert w.wait(timeout=300) == 0, w.stderr.read()
    index = EmbeddingIndex.load(ix, device="cpu")
    assert len(index) == 5 + 4 * 20
    tags = index.metadata["tag"].tolist()
    assert sorted(t for t in tags if t.startswith("w")) == sorted(f"w{w}-{i}" for w in range(4) for i in range(20))
    assert len(set(index.ids)) == len(index)


def test_threads_of_one_process_are_serialised_too(tmp_path):
    import threading

    ix = tmp_path / "ix"
    _saved_index(ix, n=1)

    def adder(worker: int) -> None:
        for i in range(10):
            with locked_update(ix) as index:
                index.add(_vectors(1, seed=100 * worker + i))

    threads = [threading.Thread(target=adder, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(EmbeddingIndex.load(ix, device="cpu")) == 41


def test_an_update_that_changes_nothing_does_not_rewrite(tmp_path):
    ix = tmp_path / "ix"
    _saved_index(ix, n=3)
    before = (ix / "manifest.json").read_bytes()
    with locked_update(ix) as index:
        assert index.remove_ids([999]) == 0
    assert (ix / "manifest.json").read_bytes() == before
