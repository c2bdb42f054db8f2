"""Training curves: CSV rows written as training goes, curves.png and history.json after every epoch,
a killed and resumed run continues its files, and TensorBoard is optional."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fashionnet.training import train
from fashionnet.training.log import EPOCH_COLUMNS, STEP_COLUMNS, TrainingLog
from fashionnet.training.schedule import LOSS_TERMS
from tests.conftest import TINY_TRAIN_ARGS

# Two epochs (landmark stage, joint stage) of four steps each, a row of train_log.csv every two steps.
RUN_ARGS = [*TINY_TRAIN_ARGS, "--joint-epochs", "1", "--batches-per-epoch", "4", "--log-every", "2", "--ood-images", "0"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _rows(path: Path) -> list[dict]:
    text = path.read_text()
    assert text.count("\nepoch,") == 0 and text.startswith("epoch,"), f"{path.name} must hold exactly one header:\n{text}"
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _finite(value: str) -> bool:
    return value != "" and math.isfinite(float(value))


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as im:
        im.verify()
        assert im.format == "PNG" and min(im.size) > 100


class Killed(Exception):
    pass


def test_curves_are_written_as_training_goes_and_a_resumed_run_continues_them(synth_root, tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = [*RUN_ARGS, "--data-root", str(synth_root / "consumer2shop"), "--output-dir", str(out)]
    real_evaluate, calls = train.evaluate, []

    def evaluate_then_die(*a, **kw):
        calls.append(1)
        if len(calls) == 2:  # the run dies in epoch 2's validation, after its steps, before its checkpoint
            raise Killed
        return real_evaluate(*a, **kw)

    monkeypatch.setattr(train, "evaluate", evaluate_then_die)
    with pytest.raises(Killed):
        train.main(args)
    # What the dead run leaves: everything of epoch 1, and the steps of epoch 2 it logged before dying.
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1]
    assert [r["epoch"] for r in _rows(out / "epochs.csv")] == ["1"]
    assert [(r["epoch"], r["step"]) for r in _rows(out / "train_log.csv")] == [("1", "2"), ("1", "4"), ("2", "6"), ("2", "8")]
    _assert_png(out / "curves.png")

    monkeypatch.undo()
    train.main([*args, "--resume", "auto"])  # redoes epoch 2 from the epoch-1 checkpoint
    steps = _rows(out / "train_log.csv")
    assert list(steps[0]) == list(STEP_COLUMNS)
    # 4 steps / 2 = two rows per epoch; the dead run's epoch-2 rows were replaced, not repeated.
    assert [(r["epoch"], r["step"]) for r in steps] == [("1", "2"), ("1", "4"), ("2", "6"), ("2", "8")]
    for r in steps:
        assert all(_finite(r[c]) for c in STEP_COLUMNS[2:]), r
        assert float(r["lr_heads"]) > 0 and float(r["images_per_s"]) > 0
    epochs = _rows(out / "epochs.csv")
    assert list(epochs[0]) == list(EPOCH_COLUMNS)
    assert [(r["epoch"], r["stage"]) for r in epochs] == [("1", "landmark"), ("2", "joint")]
    for r in epochs:
        assert all(_finite(r[f"train_{t}"]) for t in ("landmark", "visibility", "category", "attribute", "triplet", "total")), r
        # the tiny validation gallery has 4 images, so top-5 and beyond are not measured and stay empty
        assert 0 <= float(r["val_top1"]) <= 1 and 0 <= float(r["val_map_at_r"]) <= 1 and float(r["val_ne"]) >= 0, r
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert float(epochs[1]["val_ne"]) == pytest.approx(history[1]["val"]["ne"], rel=1e-5)
    _assert_png(out / "curves.png")


def test_tensorboard_is_optional(synth_root, tmp_path, capsys):
    """One epoch with --tensorboard and --log-every 0 (one row of train_log.csv per epoch)."""
    out = tmp_path / "tb"
    train.main([*RUN_ARGS, "--joint-epochs", "0", "--log-every", "0", "--tensorboard",
                   "--data-root", str(synth_root / "consumer2shop"), "--output-dir", str(out)])
    printed = capsys.readouterr().out
    if importlib.util.find_spec("tensorboard") is None:
        assert "--tensorboard: the tensorboard package is not installed" in printed
        assert not (out / "tensorboard").exists()
    else:
        assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert [(r["epoch"], r["step"]) for r in _rows(out / "train_log.csv")] == [("1", "4")]
    assert len(_rows(out / "epochs.csv")) == 1
    assert (out / "checkpoint.pt").exists()


def _fake_epoch(log: TrainingLog, epoch: int, steps: int, first_step: int, history: list) -> None:
    log.begin_epoch(epoch)
    for i in range(steps):
        value = float(first_step + i)
        log.step(first_step + i, {**{t: value for t in LOSS_TERMS}, "total": 5 * value},
                 [0.1, 0.2], 8)
    record = {"epoch": epoch + 1, "stage": "joint", "train": {"total": 1.0}}
    history.append(record)
    log.epoch(record, history)


def test_rows_hold_the_means_since_the_last_row_and_never_span_epochs(tmp_path):
    log, history = TrainingLog(tmp_path, log_every=2, plot=False), []
    _fake_epoch(log, 0, 3, 1, history)  # steps 1-3: a row at step 2, then the epoch's last step on its own
    _fake_epoch(log, 1, 3, 4, history)  # steps 4-6: a row at 4 (one step), then 5-6
    log.close()
    rows = _rows(tmp_path / "train_log.csv")
    assert [(r["epoch"], r["step"], r["landmark"], r["total"]) for r in rows] == [
        ("1", "2", "1.5", "7.5"), ("1", "3", "3", "15"), ("2", "4", "4", "20"), ("2", "6", "5.5", "27.5")]
    assert {(r["lr_trunk"], r["lr_heads"]) for r in rows} == {("0.1", "0.2")}
    epochs = _rows(tmp_path / "epochs.csv")
    assert [(r["epoch"], r["train_total"], r["train_landmark"], r["val_top1"]) for r in epochs] == [("1", "1", "", ""), ("2", "1", "", "")]
    assert not (tmp_path / "curves.png").exists()


def test_a_new_run_starts_the_files_afresh_and_a_resumed_one_drops_epochs_it_repeats(tmp_path):
    log, history = TrainingLog(tmp_path, log_every=0, plot=False), []
    for epoch in range(3):
        _fake_epoch(log, epoch, 2, 2 * epoch + 1, history)
    log.close()
    with open(tmp_path / "train_log.csv", "a") as fh:
        fh.write("3,7,1.0,2")  # a row cut short by a run killed in epoch 4
    TrainingLog(tmp_path, log_every=0, start_epoch=3, plot=False).close()  # resumed from epoch 3's checkpoint
    assert [r["step"] for r in _rows(tmp_path / "train_log.csv")] == ["2", "4", "6"]
    resumed = TrainingLog(tmp_path, log_every=0, start_epoch=2, plot=False)  # resumed from epoch 2's checkpoint
    _fake_epoch(resumed, 2, 2, 5, history[:2])
    resumed.close()
    assert [r["epoch"] for r in _rows(tmp_path / "train_log.csv")] == ["1", "2", "3"]
    assert [r["epoch"] for r in _rows(tmp_path / "epochs.csv")] == ["1", "2", "3"]
    assert [r["epoch"] for r in json.loads((tmp_path / "history.json").read_text())] == [1, 2, 3]
    TrainingLog(tmp_path, plot=False).close()  # a new run into the same folder
    assert _rows(tmp_path / "train_log.csv") == [] and _rows(tmp_path / "epochs.csv") == []


def test_without_matplotlib_the_png_is_skipped_with_a_notice(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    log, history = TrainingLog(tmp_path, log_every=1), []
    _fake_epoch(log, 0, 2, 1, history)
    log.close()
    assert "curves.png is not drawn: matplotlib is not installed" in capsys.readouterr().out
    assert not (tmp_path / "curves.png").exists()
    assert len(_rows(tmp_path / "train_log.csv")) == 2 and (tmp_path / "history.json").exists()


@pytest.mark.slow
def test_ddp_logs_once_from_rank_0(synth_root, tmp_path):
    """Each step and epoch is logged once, and only one process reports on (or writes) TensorBoard."""
    out = tmp_path / "ddp"
    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "0", "--rdzv_backend", "c10d",
           "--rdzv_endpoint", "127.0.0.1:0", str(repo / "scripts" / "train_fashionnet.py"),
           *RUN_ARGS, "--batches-per-epoch", "2", "--log-every", "1", "--tensorboard", "--data-root", str(synth_root / "consumer2shop"),
           "--output-dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if importlib.util.find_spec("tensorboard") is None:
        assert proc.stdout.count("--tensorboard: the tensorboard package is not installed") == 1, proc.stdout
    else:
        assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    # each rank runs 2 steps per epoch, and each step has its row
    assert [(r["epoch"], r["step"]) for r in _rows(out / "train_log.csv")] == [("1", "1"), ("1", "2"), ("2", "3"), ("2", "4")]
    assert [r["epoch"] for r in _rows(out / "epochs.csv")] == ["1", "2"]


def test_a_failed_drawing_warns_and_the_logs_go_on(tmp_path, monkeypatch, capsys):
    import fashionnet.training.log as training_log

    def broken(*a, **kw):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(training_log, "plot_curves", broken)
    log, history = TrainingLog(tmp_path, log_every=1), []
    _fake_epoch(log, 0, 2, 1, history)
    _fake_epoch(log, 1, 2, 3, history)
    log.close()
    assert capsys.readouterr().out.count("curves.png not redrawn: RuntimeError: no fonts") == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == [] and not (tmp_path / "curves.png").exists()
    assert len(_rows(tmp_path / "epochs.csv")) == 2
