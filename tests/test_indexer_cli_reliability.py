"""`indexer` reports honestly and checks its arguments before the slow work starts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli_helpers import run_cli
from indexer.store import EmbeddingIndex

REPO = Path(__file__).resolve().parents[1]


def _photos(folder: Path, n: int, seed: int) -> list[Path]:
    """n distinct small photos (random pixels, so no two share content)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"photo_{seed}_{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 256, size=(48, 40, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def test_add_of_only_unreadable_images_fails_and_leaves_the_index_alone(capsys, index_copy, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("not a picture")
    before = (index_copy / "manifest.json").read_bytes()
    code, out, err = run_cli(capsys, "add", index_copy, bad, "--workers", 0)
    assert code == 1
    assert "empty.jpg" in err and "text.jpg" in err and "nothing added" in err
    assert (index_copy / "manifest.json").read_bytes() == before


def test_add_skips_images_already_indexed_and_records_what_it_skipped(capsys, index_copy, tmp_path):
    indexed = EmbeddingIndex.load(index_copy).metadata
    known_path = indexed["image_path"].iloc[0]
    code, _, err = run_cli(capsys, "add", index_copy, known_path, "--workers", 0)
    assert code == 1 and f"already in the index (id {indexed.index[0]})" in err

    new = tmp_path / "new"
    new.mkdir()
    shutil.copy(known_path, new / "renamed_copy.jpg")  # the same picture under another name
    (new / "broken.jpg").write_bytes(b"\xff\xd8\xff junk")
    fresh = _photos(new, 1, seed=3)[0]
    code, out, err = run_cli(capsys, "add", index_copy, new, "--workers", 0)
    assert code == 0 and "added 1 images" in out
    assert "renamed_copy.jpg" in err and f"same picture is already in the index as id {indexed.index[0]}" in err
    after = EmbeddingIndex.load(index_copy)
    assert len(after) == len(indexed) + 1
    assert after.metadata["image_path"].iloc[-1] == str(fresh.resolve())
    manifest = json.loads((index_copy / "manifest.json").read_text())
    skipped = {Path(entry["path"]).name: entry["problem"] for entry in manifest["extra"]["skipped"]}
    assert "broken.jpg" in skipped and skipped["renamed_copy.jpg"].startswith("duplicate:")
    assert manifest["extra"]["skipped_count"] >= 2

    code, _, err = run_cli(capsys, "add", index_copy, fresh, fresh, "--workers", 0)  # again: nothing new
    assert code == 1 and "already in the index" in err
    assert len(EmbeddingIndex.load(index_copy)) == len(indexed) + 1


def test_remove_of_an_unknown_item_fails_and_leaves_the_index_alone(capsys, index_copy):
    before = (index_copy / "manifest.json").read_bytes()
    code, _, err = run_cli(capsys, "remove", index_copy, "--item", "no_such_item")
    assert code == 1 and "'no_such_item' is not in the index" in err and "nothing removed" in err
    assert (index_copy / "manifest.json").read_bytes() == before


def test_build_checks_out_before_loading_the_model_or_embedding(capsys, tmp_path):
    photos = _photos(tmp_path / "shop", 2, seed=1)
    a_file = tmp_path / "index.txt"
    a_file.write_text("keep me")
    # the checkpoint does not exist either: the --out problem must be the one reported, at once
    code, _, err = run_cli(capsys, "build", "--checkpoint", tmp_path / "missing.pt", "--images", *photos, "--out", a_file)
    assert code == 2 and "it is a file, not a directory" in err
    assert a_file.read_text() == "keep me"

    code, _, err = run_cli(capsys, "build", "--checkpoint", tmp_path / "missing.pt", "--images", *photos, "--out", tmp_path / "x",
                           "--shard", "3/2")
    assert code == 2 and "--shard 3/2" in err


def test_build_into_a_folder_of_user_files_needs_force_and_keeps_them(capsys, tiny_checkpoint, tmp_path):
    photos = _photos(tmp_path / "shop", 3, seed=2)
    out = tmp_path / "project"
    (out / "src").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "src" / "main.py").write_text("print(1)")
    code, _, err = run_cli(capsys, "build", "--checkpoint", tiny_checkpoint, "--images", *photos, "--out", out, "--workers", 0)
    assert code == 2 and "not empty" in err and "--force" in err
    code, _, err = run_cli(capsys, "build", "--checkpoint", tiny_checkpoint, "--images", *photos, "--out", out, "--workers", 0, "--force")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine" and (out / "src" / "main.py").read_text() == "print(1)"
    assert len(EmbeddingIndex.load(out)) == 3
    code, _, err = run_cli(capsys, "add", out, _photos(tmp_path / "more", 1, seed=9)[0], "--workers", 0)
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine" and len(EmbeddingIndex.load(out)) == 4


@pytest.mark.slow
def test_four_concurrent_add_processes_all_land(tiny_index, tmp_path):
    target = tmp_path / "idx"
    shutil.copytree(tiny_index, target)
    n0 = len(EmbeddingIndex.load(target))
    folders = []
    for w in range(4):
        _photos(tmp_path / f"batch{w}", 20, seed=100 + w)
        folders.append(tmp_path / f"batch{w}")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "indexer.cli", "add", str(target), str(f), "--workers", "0", "--device", "cpu"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for f in folders]
    start = time.time()
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        assert "added 20 images" in out
    final = EmbeddingIndex.load(target)
    assert len(final) == n0 + 80, f"{len(final) - n0} of 80 images landed in {time.time() - start:.0f} s"
    assert final.metadata["image_path"].is_unique and len(set(final.ids)) == len(final)
