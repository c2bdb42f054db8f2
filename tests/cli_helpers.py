"""Running the `indexer` command inside a test, as a user would from a shell."""

from __future__ import annotations

from indexer.cli import main as indexer


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``indexer ARGS...``; arguments may be paths or numbers."""
    code = indexer([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err
