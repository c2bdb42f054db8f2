"""Shared fixtures: one tiny synthetic benchmark, one briefly trained tiny model, one gallery index.

Built once per test session (they cost seconds) so every layer is tested on real files.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import threading
from pathlib import Path

import pytest
import torch
import tqdm

# The mutation run forks a test process per mutant. tqdm's default lock is a multiprocessing
# semaphore shared with every forked process, so one killed while holding it would hang all later
# ones; tests use a per-process lock and no monitor thread.
tqdm.tqdm.monitor_interval = 0
tqdm.tqdm.set_lock(threading.RLock())

# Two cores are shared by everything; one intra-op thread keeps the tests from oversubscribing.
# FASHIONNET_TEST_THREADS overrides it (the mutation run forks test processes and wants 1).
torch.set_num_threads(int(os.environ.get("FASHIONNET_TEST_THREADS", "0")) or max(1, min(2, os.cpu_count() or 1)))

# The commands run the model with ONNX Runtime by default (runtime "auto"): exports of this
# session's models go to a temporary cache, not the user's.
os.environ.setdefault("FASHIONNET_ONNX_CACHE", tempfile.mkdtemp(prefix="fashionnet-onnx-tests-"))

# Validation runs after every epoch; a few queries exercise it (the figures are not asserted on).
# The tiny benchmark's 24 items cannot support a 128-d whitening, and the tiny trunk has only 4
# layers, so the recommended recipe's whitening, colours, detail windows and frozen layers are off;
# the tests that need them switch them on.
TINY_TRAIN_ARGS = [
    "--backbone", "tiny", "--weights", "none", "--image-size", "96", "--embedding-dim", "32",
    "--rounds", "1", "--landmark-epochs", "1", "--joint-epochs", "3", "--gt-pooling-epochs", "1",
    "--items-per-batch", "6", "--images-per-item", "3", "--batches-per-epoch", "10", "--lr", "3e-3", "--warmup-steps", "2",
    "--workers", "0", "--no-progress", "--val-max-queries", "6", "--seed", "0",
    "--whiten-dim", "0", "--colour-window", "0", "--detail-window", "0", "--freeze-trunk-layers", "0",
]


def load_script(name: str):
    """A script in scripts/ loaded as a module (scripts/ is not a package), so tests call its main()."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A tiny synthetic DeepFashion benchmark: <root>/inshop and <root>/consumer2shop."""
    from fashionnet.data.synthetic import generate_synthetic_deepfashion

    root = tmp_path_factory.mktemp("synth") / "synth"
    generate_synthetic_deepfashion(root, size="tiny", seed=0, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def trained_tiny(synth_root, tmp_path_factory) -> dict:
    """A tiny FashionNet trained for a few steps on the consumer2shop layout; returns main()'s result."""
    from fashionnet.training.train import main

    out = tmp_path_factory.mktemp("run") / "tiny"
    result = main([*TINY_TRAIN_ARGS, "--data-root", str(synth_root / "consumer2shop"), "--output-dir", str(out)])
    result["output_dir"] = out
    return result


@pytest.fixture(scope="session")
def tiny_checkpoint(trained_tiny) -> Path:
    return Path(trained_tiny["checkpoint"])


@pytest.fixture(scope="session")
def tiny_index(synth_root, tiny_checkpoint, tmp_path_factory) -> Path:
    """A real FAISS index of the consumer2shop test gallery, built by the indexer."""
    return _gallery_index(tiny_checkpoint, synth_root, tmp_path_factory.mktemp("index") / "gallery")


def _gallery_index(checkpoint: Path, synth_root: Path, out: Path) -> Path:
    """The consumer2shop test gallery indexed by ``indexer.build`` with ``checkpoint``, into ``out``."""
    from fashionnet.inference.predictor import Predictor
    from indexer.build import build_index, gallery_rows

    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", runtime="torch")
    build_index(predictor, gallery_rows(synth_root / "consumer2shop"), out, workers=0, progress=False,
                checkpoint_path=str(checkpoint), device="cpu")
    return out


@pytest.fixture()
def index_copy(tiny_index, tmp_path) -> Path:
    """A copy of the session's index that a test may change."""
    import shutil

    dst = tmp_path / "idx"
    shutil.copytree(tiny_index, dst)
    return dst


@pytest.fixture(scope="session")
def trust_checkpoint(tiny_checkpoint, synth_root, tmp_path_factory) -> Path:
    """The tiny checkpoint with what the trust checks read: held-out photos for the close-match
    score (consumer photos of the items the test gallery lacks, against their shop photos; training
    kept too few validation photos to store them) and an unfamiliar threshold between every
    synthetic garment photo and plain photos, which the briefly trained tiny model's own threshold
    does not reliably separate. The photos of ``plain_photo`` are among those it is set on."""
    import shutil

    from fashionnet.calibration.close_match import store_match_reference
    from fashionnet.data.readers import read_benchmark
    from fashionnet.inference.predictor import Predictor
    from fashionnet.models.checkpoint import atomic_torch_save, load_checkpoint

    out = tmp_path_factory.mktemp("trust") / "checkpoint.pt"
    shutil.copy(tiny_checkpoint, out)
    root = synth_root / "consumer2shop"
    frame = read_benchmark(root, "consumer2shop", verify_images=False)
    held = frame[frame["split"] != "test"]
    predictor = Predictor.from_checkpoint(out, device="cpu", runtime="torch")
    assert store_match_reference(out, predictor, held[held["source"] == "consumer"], held[held["source"] == "shop"], root) is not None
    garments = max(p.unfamiliarity for p in predictor.predict_batch([str(root / p) for p in frame["image_path"]]))
    plain = min(p.unfamiliarity for p in predictor.predict_batch(plain_photos()))
    assert garments < plain, f"the tiny model scores a garment photo ({garments:.2f}) as unfamiliar as a plain one ({plain:.2f})"
    ckpt = load_checkpoint(out)
    ckpt["ood"]["threshold"] = (garments + plain) / 2
    atomic_torch_save(ckpt, out)
    return out


def plain_photos(n: int = 8):
    """Plain-colour photos (fashionnet.calibration.ood's non-garment probes) as arrays."""
    from fashionnet.calibration.ood import non_garment_probes

    return non_garment_probes(n_per_kind=n)["plain"]


@pytest.fixture()
def plain_photo(tmp_path) -> Path:
    """A plain-colour PNG, one the trust checkpoint's unfamiliar threshold was set against."""
    from PIL import Image

    path = tmp_path / "plain_wall.png"
    Image.fromarray(plain_photos()[0]).save(path)
    return path


@pytest.fixture(scope="session")
def trust_index(trust_checkpoint, synth_root, tmp_path_factory) -> Path:
    """The consumer2shop test gallery indexed with the trust checkpoint: it records a close-match score."""
    return _gallery_index(trust_checkpoint, synth_root, tmp_path_factory.mktemp("trust_index") / "gallery")
