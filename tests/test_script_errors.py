"""Every script and ``fashionnet-train`` refuse a bad checkpoint or index with one line, like
``indexer`` does: ``PROG: error: MESSAGE`` naming the file, exit status 2, no traceback
(fashionnet.cli.errors). A bug keeps its traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fashionnet.cli.errors import is_refusal, run_main
from tests.conftest import TINY_TRAIN_ARGS

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"


class _Payload:
    """Unpickling it would run code: ``torch.load(weights_only=True)`` refuses the file."""


def _junk(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "notes.pt"
    text.write_text("not a checkpoint\n")
    unsafe = folder / "unsafe.pt"
    torch.save({"format": "x", "obj": _Payload()}, unsafe)
    empty_index = folder / "not_an_index"
    empty_index.mkdir()
    photos = folder / "photos"
    photos.mkdir()
    (photos / "one.jpg").write_bytes((REPO / "docs" / "real_portraits.jpg").read_bytes())
    return {"text": text, "unsafe": unsafe, "index": empty_index, "photos": photos, "out": folder / "out"}


def _commands(junk: dict[str, Path], data_root: Path) -> dict[str, tuple[list[str], Path]]:
    """name -> (command line, the file its error must name)."""
    py = sys.executable
    train = [*TINY_TRAIN_ARGS, "--data-root", str(data_root), "--output-dir", str(junk["out"] / "run")]
    console = Path(sys.executable).with_name("fashionnet-train")
    commands = {
        "evaluate_retrieval, text": ([py, str(SCRIPTS / "evaluate_retrieval.py"), "--checkpoint", str(junk["text"]), "--data-root",
                                      str(data_root), "--benchmark", "consumer2shop"], junk["text"]),
        "evaluate_retrieval, unsafe pickle": ([py, str(SCRIPTS / "evaluate_retrieval.py"), "--checkpoint", str(junk["unsafe"]),
                                               "--data-root", str(data_root), "--benchmark", "consumer2shop"], junk["unsafe"]),
        "fit_whitening": ([py, str(SCRIPTS / "fit_whitening.py"), "--checkpoint", str(junk["unsafe"]), "--out", str(junk["out"] / "w.pt")],
                          junk["unsafe"]),
        "draw_real_photos": ([py, str(SCRIPTS / "draw_real_photos.py"), "--checkpoint", str(junk["text"]), "--photos",
                              str(junk["photos"] / "one.jpg"), "--out", str(junk["out"] / "sheet.png")], junk["text"]),
        "train_fashionnet --resume": ([py, str(SCRIPTS / "train_fashionnet.py"), *train, "--resume", str(junk["text"])], junk["text"]),
        "benchmark_serving, not an index": ([py, str(SCRIPTS / "benchmark_serving.py"), "--index", str(junk["index"]), "--photos",
                                             str(junk["photos"])], junk["index"]),
    }
    if console.exists():  # the installed command
        commands["fashionnet-train --resume"] = ([str(console), *train, "--resume", str(junk["unsafe"])], junk["unsafe"])
    return commands


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synth_root) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Every command run at once (each spends seconds importing torch)."""
    junk = _junk(tmp_path_factory.mktemp("junk"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    started = {}
    for name, (command, named) in _commands(junk, synth_root / "consumer2shop").items():
        started[name] = (subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), named,
                         Path(command[1]).name if command[0] == sys.executable else "fashionnet-train")
    done = {}
    for name, (proc, named, prog) in started.items():
        out, err = proc.communicate(timeout=300)
        done[name] = (proc.returncode, out, err, named, prog)
    return done


NAMES = ["evaluate_retrieval, text", "evaluate_retrieval, unsafe pickle", "fit_whitening", "draw_real_photos",
         "train_fashionnet --resume", "benchmark_serving, not an index", "fashionnet-train --resume"]


@pytest.mark.parametrize("name", NAMES)
def test_a_refused_checkpoint_or_index_is_one_line_naming_the_file(runs, name):
    if name not in runs:
        pytest.skip("the fashionnet-train command is not installed beside this Python")
    code, out, err, named, prog = runs[name]
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: {named}"), lines[0]


# ----------------------------------------------------------------------------- the rule itself


def _raise(exc: BaseException):
    raise exc


def test_the_rule_maps_refusals_to_one_line_and_exit_2(capsys, tmp_path):
    from fashionnet.data.images import ImageLoadError
    from fashionnet.models.checkpoint import CheckpointError, load_checkpoint
    from indexer.errors import IndexLoadError

    assert run_main(lambda: load_checkpoint(tmp_path / "missing.pt"), prog="tool") == 2
    assert capsys.readouterr().err == f"tool: error: {tmp_path / 'missing.pt'}: no such checkpoint file. Train one with scripts/train_fashionnet.py.\n"
    for exc in (CheckpointError("a.pt: damaged"), ImageLoadError("b.jpg", "not an image"), IndexLoadError("idx: manifest.json is missing"),
                FileNotFoundError("c.txt: no such file")):
        assert is_refusal(exc)
        assert run_main(lambda exc=exc: _raise(exc), prog="tool") == 2
        err = capsys.readouterr().err
        assert err.startswith("tool: error: ") and err.count("\n") == 1 and str(exc).splitlines()[0] in err


def test_a_multi_line_message_is_joined_onto_one_line(capsys):
    from fashionnet.models.checkpoint import CheckpointError

    assert run_main(lambda: _raise(CheckpointError("x.pt: unusable\n  because: reasons")), prog="tool") == 2
    assert capsys.readouterr().err == "tool: error: x.pt: unusable because: reasons\n"


def test_bugs_keep_their_traceback():
    with pytest.raises(RuntimeError):
        run_main(lambda: _raise(RuntimeError("a bug")))
    with pytest.raises(KeyError):
        run_main(lambda: {}["missing"])
    # a ValueError from inside a library is a bug too; one the project's code raises is a message
    with pytest.raises(ValueError, match="reshape"):
        run_main(lambda: np.zeros(3).reshape(2))
    from fashionnet.data.images import load_image

    with pytest.raises(ValueError) as caught:
        load_image(np.zeros((2, 2, 7), dtype=np.uint8))
    assert is_refusal(caught.value)


def test_the_commands_own_exit_status_is_kept():
    assert run_main(lambda: 1) == 1
    assert run_main(lambda: None) == 0
    assert run_main(lambda: {"history": []}) == 0  # fashionnet-train's result is not an exit status
