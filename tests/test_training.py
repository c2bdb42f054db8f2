"""Training: every loss term falls, retrieval beats chance, checkpoints resume exactly, collapse is caught."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fashionnet.data.dataset import DeepFashionDataset, collate_skip_none
from fashionnet.data.readers import read_attribute_names, read_consumer2shop
from fashionnet.data.transforms import build_transforms
from fashionnet.models import FashionNetConfig, create_model
from fashionnet.models.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from fashionnet.training.data import attribute_matrix
from fashionnet.training.losses import AttributeLoss, FashionNetLosses
from fashionnet.training.schedule import IterativeSchedule, LandmarkCollapseError, LandmarkCollapseGuard
from fashionnet.training.train import main
from tests.conftest import TINY_TRAIN_ARGS

REPO = Path(__file__).resolve().parents[1]


def test_short_training_lowers_every_loss_term(trained_tiny):
    history = trained_tiny["history"]
    first, last = history[0]["train"], history[-1]["train"]
    for term in ("landmark", "visibility", "category", "attribute"):
        assert last[term] < first[term], f"{term}: {first[term]:.4f} in epoch 1 -> {last[term]:.4f} in epoch {len(history)}"
    # The triplet term is compared within the joint stage: the first epoch pools at the annotated
    # landmarks, the joint stage at predicted ones, which starts the term afresh.
    joint = [r["train"]["triplet"] for r in history if r["stage"] == "joint"]
    assert len(joint) >= 2 and joint[-1] < joint[0], f"triplet over the joint epochs: {joint}"
    # Validation ran after every epoch (on a capped number of queries) and reported its figures.
    assert all(0 <= r["val"]["top_k"][1] <= 1 and r["val"]["ne"] >= 0 for r in history)


def test_training_beats_chance_at_retrieval(trained_tiny, tiny_checkpoint, synth_root):
    """Consumer photos of the training items find their shop images far more often than chance."""
    from fashionnet.evaluation.retrieval_metrics import retrieval_metrics
    from fashionnet.inference.predictor import Predictor

    root = synth_root / "consumer2shop"
    frame = read_consumer2shop(root)
    train = frame[frame["split"] == "train"]
    queries, gallery = train[train["source"] == "consumer"], train[train["source"] == "shop"]
    counts = gallery["item_id"].value_counts()
    chance_top1 = float(np.mean([counts.get(i, 0) / len(gallery) for i in queries["item_id"]]))
    # one view: what training learned, without the retrieval-time mirror image
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", flip_average=False, runtime="torch")
    embed = lambda rows: np.concatenate([p.embedding[None] for p in predictor.predict_batch([root / x for x in rows["image_path"]])])
    result = retrieval_metrics(embed(queries), queries["item_id"].to_numpy(), embed(gallery), gallery["item_id"].to_numpy(), ks=(1, 5),
                               show_progress=False)
    assert result["top_k"][1] > 2 * chance_top1, (result, chance_top1)


def test_resume_gives_identical_weights(synth_root, tmp_path):
    args = [*TINY_TRAIN_ARGS, "--data-root", str(synth_root / "consumer2shop"), "--joint-epochs", "1", "--batches-per-epoch", "3"]
    straight = tmp_path / "straight"
    main([*args, "--output-dir", str(straight)])
    split = tmp_path / "split"
    main([*args, "--output-dir", str(split), "--time-limit-minutes", "1e-6"])  # stops after the first epoch
    assert load_checkpoint(split / "checkpoint.pt")["epoch"] == 0
    main([*args, "--output-dir", str(split), "--resume", "auto"])
    a, b = load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(split / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 1
    assert a["model_checksum"] == b["model_checksum"]
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0, msg=key)


def test_checkpoint_holds_what_inference_needs(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    assert ckpt["model_config"]["backbone"] == "tiny"
    assert ckpt["label_maps"]["categories"] and ckpt["label_maps"]["attributes"]
    assert ckpt["preprocessing"]["image_size"] == 96
    assert {"optimizer", "scheduler", "args"} <= set(ckpt)
    # the training default appends the pooled appearance: 32 fusion + the tiny conv5's 64 channels
    assert ckpt["model_config"]["appearance_weight"] == 2.0
    model, _ = model_from_checkpoint(ckpt, tiny_checkpoint)
    assert model.search_dim == 32 + 64


def test_checkpoint_with_missing_key_is_refused(tiny_checkpoint, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    del ckpt["model_config"]
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match=r"bad\.pt.*missing key\(s\) model_config"):
        load_checkpoint(bad)


def test_checkpoint_with_wrong_weights_is_refused(tiny_checkpoint, tmp_path):
    from fashionnet.inference.predictor import Predictor

    ckpt = load_checkpoint(tiny_checkpoint)
    state = dict(ckpt["model"])
    state["renamed.weight"] = state.pop(next(iter(state)))
    bad = tmp_path / "renamed.pt"
    save_checkpoint(bad, model_state=state, model_config=ckpt["model_config"], label_maps=ckpt["label_maps"],
                    preprocessing=ckpt["preprocessing"], epoch=0)
    with pytest.raises(CheckpointError, match=r"renamed\.pt: checkpoint does not fit.*renamed\.weight"):
        Predictor.from_checkpoint(bad, runtime="torch")


def test_damaged_checkpoint_is_refused(tiny_checkpoint, tmp_path):
    data = tiny_checkpoint.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt: not a FashionNet checkpoint"):
        load_checkpoint(bad)


class Payload:
    """An arbitrary class: unpickling it would run code, so weights_only=True must refuse it."""


def test_checkpoint_with_code_in_it_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "x", "obj": Payload()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused"):
        load_checkpoint(path)


def test_iterative_schedule_alternates_stages():
    s = IterativeSchedule(rounds=2, landmark_epochs=1, joint_epochs=2, gt_pooling_epochs=2)
    assert [s.stage(e) for e in range(s.total_epochs)] == ["landmark", "joint", "joint"] * 2
    assert s.weights(0)["landmark"] > s.weights(0)["triplet"]
    assert len(set(s.weights(1).values())) == 1
    assert [s.pool_on_ground_truth(e) for e in range(4)] == [True, True, False, False]


def test_collapse_guard_stops_frozen_landmarks():
    guard = LandmarkCollapseGuard(min_spread=0.01, patience=3, warmup=2)
    healthy = torch.rand(8, 8, 2)
    for _ in range(10):
        guard.check(healthy)
    frozen = torch.full((8, 8, 2), 0.5) + 1e-4 * torch.randn(8, 8, 2)
    with pytest.raises(LandmarkCollapseError, match="landmark collapse"):
        for _ in range(10):
            guard.check(frozen)


@pytest.mark.slow
def test_ddp_two_cpu_processes(synth_root, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "0", "--rdzv_backend", "c10d",
           "--rdzv_endpoint", "127.0.0.1:0", str(REPO / "scripts" / "train_fashionnet.py"),
           *TINY_TRAIN_ARGS, "--joint-epochs", "1", "--batches-per-epoch", "2", "--data-root", str(synth_root / "consumer2shop"),
           "--output-dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2
    # one sampler shards the batches: each rank ran its share, so throughput counts both processes
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
