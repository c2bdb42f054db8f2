"""Running the `indexer` command inside a test, as a user would from a shell, and the servers
tests start in subprocesses."""

from __future__ import annotations

import socket
import subprocess

from indexer.cli import main as indexer


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``indexer ARGS...``; arguments may be paths or numbers."""
    code = indexer([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def free_port() -> int:
    """A free TCP port on the loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Stop a server subprocess: terminate, then kill if it does not exit within ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
