"""A bad checkpoint gets one clear sentence naming the file, and never the advice to load it unsafely."""

from __future__ import annotations

import io
import zipfile

import pytest
import torch

from fashionnet.models.checkpoint import CheckpointError, load_checkpoint


class _RunsCode:
    def __reduce__(self):
        return (print, ("this ran while loading",))


def _message(path) -> str:
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    return str(caught.value)


def test_a_checkpoint_that_would_run_code_is_refused_without_unsafe_advice(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": _RunsCode()}, path)
    message = _message(path)
    assert message.startswith(f"{path}: refused") and "could run code" in message
    assert "weights_only" not in message and "False" not in message
    assert "this ran while loading" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "the file is empty"),
        (b"\x00\x01junk" * 20, "not a PyTorch checkpoint file"),
        (b"PK\x03\x04" + b"\x00" * 60, "not a PyTorch checkpoint file"),
        ("a text file\n".encode(), "not a PyTorch checkpoint file"),
    ],
)
def test_junk_files_name_the_file_and_the_problem(tmp_path, content, problem):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    message = _message(path)
    assert message.startswith(str(path)) and problem in message
    assert "(101)" not in message and "index out of range" not in message


def test_a_zip_that_is_not_a_checkpoint(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("readme.txt", "hello")
    path = tmp_path / "archive.pt"
    path.write_bytes(buffer.getvalue())
    assert "not a PyTorch checkpoint file" in _message(path)
