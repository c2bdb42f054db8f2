"""A DataLoader worker that fails while decoding ends the job with one clear error, never a hang.

The batch tensor used to reach shared memory only in the worker's queue feeder thread. When that
failed (here: ``ulimit -f 80`` makes the shared-memory file too large to resize), the feeder thread
printed the error, the batch was dropped, and ``indexer add`` waited for it forever.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from indexer.embedding import embed_images
from indexer.store import EmbeddingIndex
from tests.test_indexer_cli_reliability import _photos

REPO = Path(__file__).resolve().parents[1]
LIMIT_S = 30


def test_add_whose_decoding_workers_cannot_share_a_batch_fails_fast_with_one_line(index_copy, tmp_path):
    photos = tmp_path / "photos"
    _photos(photos, 6, seed=11)  # one batch of 6 x 3 x 96 x 96 floats: 650 KiB, above the 80 KiB limit
    manifest = (index_copy / "manifest.json").read_bytes()
    count = len(EmbeddingIndex.load(index_copy))
    # torch runtime: an ONNX export would be one more file above the limit, beside the point here
    command = (f"ulimit -f 80; exec {shlex.quote(sys.executable)} -m indexer.cli add {shlex.quote(str(index_copy))} "
               f"{shlex.quote(str(photos))} --workers 2 --device cpu --runtime torch --no-progress")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen(["bash", "-c", command], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and its workers
        out, err = proc.communicate()
        pytest.fail(f"indexer add still ran after {LIMIT_S} s; its stderr:\n{err}")
    seconds = time.perf_counter() - started
    assert proc.returncode == 2, (proc.returncode, out, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("indexer add: error: a decoding worker failed: ")
    assert "File too large" in lines[0] and lines[0].endswith("; try --workers 0")
    assert seconds < LIMIT_S
    assert (index_copy / "manifest.json").read_bytes() == manifest
    assert len(EmbeddingIndex.load(index_copy)) == count


class _Refuses:
    """A transform that raises in the worker: any worker error, not only a shared-memory one."""

    def __call__(self, image):
        raise OSError(28, "No space left on device")


class _Dies:
    def __call__(self, image):
        os._exit(3)


@pytest.mark.parametrize("transform, problem", [
    (_Refuses(), "OSError: [Errno 28] No space left on device"),
    (_Dies(), "DataLoader worker (pid"),
])
def test_a_worker_that_raises_or_dies_ends_embedding_with_one_runtime_error(tmp_path, transform, problem):
    paths = [str(p) for p in _photos(tmp_path, 4, seed=11)]
    predictor = SimpleNamespace(transform=transform, device=torch.device("cpu"), embedding_dim=8)
    with pytest.raises(RuntimeError) as caught:
        embed_images(predictor, paths, batch_size=2, workers=2, progress=False)
    message = str(caught.value)
    assert message.startswith(f"a decoding worker failed: {problem}") and message.endswith("; try --workers 0")
    assert "\n" not in message


def test_without_workers_the_error_is_the_one_raised():
    predictor = SimpleNamespace(transform=_Refuses(), device=torch.device("cpu"), embedding_dim=8)
    with pytest.raises(OSError, match="No space left"):
        embed_images(predictor, [str(REPO / "docs" / "real_portraits.jpg")], workers=0, progress=False)


def test_the_workers_message_is_its_last_exception_line():
    from indexer.embedding import _worker_problem

    reraised = ("Caught RuntimeError in DataLoader worker process 1.\nOriginal Traceback (most recent call last):\n"
                '  File "worker.py", line 3, in fetch\n    out = collate(batch)\n'
                "RuntimeError: unable to resize file <filename not specified> to the right size: File too large (27)\n")
    assert _worker_problem(RuntimeError(reraised)) == \
        "RuntimeError: unable to resize file <filename not specified> to the right size: File too large (27)"
    assert _worker_problem(RuntimeError("DataLoader worker (pid 7) exited unexpectedly\nmore")) == "DataLoader worker (pid 7) exited unexpectedly"



def test_decoding_workers_are_started_fresh_not_forked(monkeypatch, tmp_path):
    """A worker forked from a process whose OpenVINO thread pool already runs hung on its first image
    (the demo model's `indexer build`: 0 of 187 images after 12 minutes, every process idle). The
    tiny test model does not hang either way, so the start method embed_images asks for is checked,
    and a loader made exactly as it asks still decodes every photo."""
    import multiprocessing

    import indexer.embedding as embedding
    from fashionnet.data.transforms import build_transforms

    class Stop(Exception):
        pass

    asked = {}

    def spy(*args, **kwargs):
        asked.update(args=args, kwargs=kwargs)
        raise Stop

    monkeypatch.setattr(embedding, "DataLoader", spy)
    photos = tmp_path / "photos"
    _photos(photos, 4, seed=3)
    paths = sorted(str(p) for p in photos.rglob("*.jpg"))
    predictor = SimpleNamespace(transform=build_transforms(train=False, size=64), device=torch.device("cpu"))
    with pytest.raises(Stop):
        embed_images(predictor, paths, batch_size=2, workers=2, progress=False)
    context = asked["kwargs"]["multiprocessing_context"]
    method = context if isinstance(context, str) or context is None else context.get_start_method()
    assert (method or multiprocessing.get_start_method()) != "fork"
    monkeypatch.undo()
    loader = embedding.DataLoader(*asked["args"], **asked["kwargs"])
    assert sum(len(positions) for _, positions, _, _, _ in embedding._batches(loader)) == len(paths)
