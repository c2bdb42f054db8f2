"""Training curves written while training runs: CSV rows, a PNG of the curves, history.json, TensorBoard.

Files under the run's output directory (written by rank 0 only, see :func:`fashionnet.training.train.main`):

- ``train_log.csv``: one row every ``log_every`` steps, and one at the end of each epoch for the
  steps since the last row (``log_every=0``: only that one). Each row holds the means over those steps.
- ``epochs.csv``: one row per epoch, mean training losses and the validation metrics when it ran.
- ``curves.png``: the loss terms, learning rates and validation metrics, redrawn after each epoch
  (needs matplotlib; without it the PNG is skipped with a notice).
- ``history.json``: every epoch's record so far, rewritten after each epoch.
- ``tensorboard/``: the same scalars, with ``tensorboard=True`` and the tensorboard package installed.

Rows are flushed as they are written, so a killed run keeps what it logged. ``start_epoch`` is the
number of epochs already done (0 for a new run, the resumed checkpoint's epoch + 1 otherwise): the
rows of those epochs are kept, later ones (which a run killed after its last checkpoint leaves) are
dropped, and the files continue from there under their one header.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from fashionnet.training.schedule import LOSS_TERMS

STEP_COLUMNS = ("epoch", "step", *LOSS_TERMS, "total", "lr_trunk", "lr_heads", "images_per_s")
TOP_KS = (1, 5, 10, 20)
EPOCH_COLUMNS = ("epoch", "stage", *(f"train_{t}" for t in (*LOSS_TERMS, "total")), "train_images_per_s",
                 *(f"val_top{k}" for k in TOP_KS), "val_map_at_r", "val_ne")
LR_NAMES = ("lr_trunk", "lr_heads")  # the optimizer's parameter groups, in build_optimizer's order


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write) -> None:
    """Call ``write(file object)`` on a temp file next to ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the logs from other users
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _number(value: Any) -> str:
    return "" if value is None else f"{float(value):.6g}"


class _CsvFile:
    """An append-only CSV whose rows are flushed one by one; keeps the rows of epochs 1..``start_epoch``."""

    def __init__(self, path: Path, columns: Sequence[str], start_epoch: int):
        self.path, self.columns = path, tuple(columns)
        self.rows = [r for r in self._read() if r["epoch"] <= start_epoch]
        atomic_write(path, lambda fh: fh.write(self._text(self.rows)))
        self._fh = open(path, "a", newline="")
        self._writer = csv.DictWriter(self._fh, fieldnames=self.columns, restval="", extrasaction="ignore")

    def _read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as fh:
            rows = []
            for row in csv.DictReader(fh):
                try:  # a line cut short by a killed run has no parsable epoch or misses its last cells
                    if row.get(self.columns[-1]) is None:
                        continue
                    rows.append({**row, "epoch": int(row["epoch"])})
                except (TypeError, ValueError):
                    continue
            return rows

    def _text(self, rows: list[dict]) -> bytes:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().encode()

    def append(self, row: dict) -> None:
        self._writer.writerow(row)
        self._fh.flush()
        self.rows.append(row)

    def close(self) -> None:
        self._fh.close()


class TrainingLog:
    """Curves of one training run, written under ``output_dir`` as training goes.

    :meth:`begin_epoch` before an epoch's first step, :meth:`step` after every optimizer step,
    :meth:`epoch` after the epoch (with its record and the history so far), :meth:`close` at the end.
    ``world_size`` scales the images/s of this process to all processes of a DDP run.
    """

    def __init__(self, output_dir: Path, log_every: int = 10, start_epoch: int = 0, tensorboard: bool = False,
                 world_size: int = 1, plot: bool = True):
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_every, self.world_size = max(0, int(log_every)), world_size
        self.steps = _CsvFile(self.dir / "train_log.csv", STEP_COLUMNS, start_epoch)
        self.epochs = _CsvFile(self.dir / "epochs.csv", EPOCH_COLUMNS, start_epoch)
        self._window: dict[str, float] = {}
        self._count, self._images, self._epoch, self._last = 0, 0, start_epoch, None
        self._window_start = time.perf_counter()
        self.plot = plot and self._matplotlib_available()
        self.writer = self._summary_writer() if tensorboard else None

    @staticmethod
    def _matplotlib_available() -> bool:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("curves.png is not drawn: matplotlib is not installed (pip install matplotlib)", flush=True)
            return False
        return True

    def _summary_writer(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("--tensorboard: the tensorboard package is not installed (pip install tensorboard); "
                  "training continues without it", flush=True)
            return None
        # A resumed run drops the events after its last logged step, as the CSV drops those rows.
        purge = int(self.steps.rows[-1]["step"]) + 1 if self.steps.rows else None
        return SummaryWriter(log_dir=str(self.dir / "tensorboard"), purge_step=purge)

    # ------------------------------------------------------------------------------------ steps

    def begin_epoch(self, epoch: int) -> None:
        """Start the clock of the epoch's first row (0-based ``epoch``, as in the training loop)."""
        self._epoch, self._window, self._count, self._images = epoch + 1, {}, 0, 0
        self._window_start = time.perf_counter()

    def step(self, step: int, losses: dict[str, float], lrs: Sequence[float], images: int) -> None:
        """One optimizer step: ``step`` counts steps over the whole run (1 after the first), ``losses``
        holds the five terms and their weighted "total", ``lrs`` the rates that step used (one per
        parameter group), ``images`` this process's batch size."""
        for t in (*LOSS_TERMS, "total"):
            self._window[t] = self._window.get(t, 0.0) + float(losses[t])
        self._count += 1
        self._images += images
        self._last = (step, list(lrs))
        if self.log_every and step % self.log_every == 0:
            self._write_row()

    def _write_row(self) -> None:
        if not self._count:
            return
        step, lrs = self._last
        seconds = max(time.perf_counter() - self._window_start, 1e-9)
        row = {"epoch": self._epoch, "step": step, **{t: _number(v / self._count) for t, v in self._window.items()},
               **{name: _number(lr) for name, lr in zip(LR_NAMES, lrs)},
               "images_per_s": f"{self._images * self.world_size / seconds:.2f}"}
        self.steps.append(row)
        if self.writer is not None:
            for key in (*LOSS_TERMS, "total"):
                self.writer.add_scalar(f"train/{key}", float(row[key]), step)
            for name, lr in zip(LR_NAMES, lrs):
                self.writer.add_scalar(f"lr/{name[3:]}", lr, step)
            self.writer.add_scalar("train/images_per_s", float(row["images_per_s"]), step)
        self._window, self._count, self._images = {}, 0, 0
        self._window_start = time.perf_counter()

    # ----------------------------------------------------------------------------------- epochs

    def epoch(self, record: dict[str, Any], history: list[dict[str, Any]]) -> None:
        """After an epoch: its last row of steps, its row of epochs.csv, history.json, curves.png."""
        self._write_row()
        train, val = record.get("train", {}), record.get("val")
        row = {"epoch": record["epoch"], "stage": record.get("stage", ""),
               **{f"train_{t}": _number(train.get(t)) for t in (*LOSS_TERMS, "total")},
               "train_images_per_s": _number(record.get("train_images_per_s"))}
        if val:
            top_k = {int(k): v for k, v in val["top_k"].items()}
            row.update({f"val_top{k}": _number(top_k.get(k)) for k in TOP_KS})
            row.update(val_map_at_r=_number(val["map_at_r"]), val_ne=_number(val["ne"]))
        self.epochs.append(row)
        self.write_history(history)
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("epoch", "stage") and value != "":
                    self.writer.add_scalar(f"epoch/{key}", float(value), record["epoch"])
            self.writer.flush()
        if self.plot:
            self.draw()

    def write_history(self, history: list[dict[str, Any]]) -> None:
        atomic_write(self.dir / "history.json", lambda fh: fh.write(json.dumps(history, indent=2).encode()))

    def draw(self) -> None:
        """Redraw curves.png from the rows logged so far; a drawing that fails warns and lets training go on."""
        try:
            atomic_write(self.dir / "curves.png", lambda fh: plot_curves(self.steps.rows, self.epochs.rows, fh))
        except Exception as exc:  # noqa: BLE001 - the CSV files hold the same figures
            print(f"curves.png not redrawn: {type(exc).__name__}: {exc}", flush=True)

    def close(self) -> None:
        self.steps.close()
        self.epochs.close()
        if self.writer is not None:
            self.writer.close()


def _floats(rows: list[dict], key: str, x: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        if r.get(key) not in (None, ""):
            xs.append(float(r[x]))
            ys.append(float(r[key]))
    return xs, ys


def plot_curves(step_rows: list[dict], epoch_rows: list[dict], fh) -> None:
    """Draw the loss terms and learning rates against the step, and validation against the epoch, as PNG into ``fh``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(13, 12), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, 3).ravel()
    for ax, term in zip(axes, (*LOSS_TERMS, "total")):
        xs, ys = _floats(step_rows, term, "step")
        ax.plot(xs, ys, lw=1)
        ax.set(title=f"{term} loss" + (" (weighted sum)" if term == "total" else ""), xlabel="step")
        if ys and min(ys) > 0 and max(ys) / min(ys) > 50:
            ax.set_yscale("log")
    lr_ax, retrieval_ax, ne_ax = axes[len(LOSS_TERMS) + 1 : len(LOSS_TERMS) + 4]
    for ax in axes[len(LOSS_TERMS) + 4 :]:
        ax.set_axis_off()
    for name in LR_NAMES:
        lr_ax.plot(*_floats(step_rows, name, "step"), label=name[3:])
    lr_ax.set(title="learning rate", xlabel="step")
    lr_ax.legend(fontsize="small")
    for key, label in (*((f"val_top{k}", f"top-{k}") for k in TOP_KS), ("val_map_at_r", "mAP@R")):
        xs, ys = _floats(epoch_rows, key, "epoch")
        if ys:
            retrieval_ax.plot(xs, ys, marker="o", label=label)
    retrieval_ax.set(title="validation retrieval", xlabel="epoch", ylim=(0, 1))
    if retrieval_ax.lines:
        retrieval_ax.legend(fontsize="small")
    ne_ax.plot(*_floats(epoch_rows, "val_ne", "epoch"), marker="o")
    ne_ax.set(title="validation landmark NE", xlabel="epoch")
    for ax in (retrieval_ax, ne_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.savefig(fh, format="png", dpi=80)

