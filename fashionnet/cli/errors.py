"""One line, not a traceback, when a command refuses what it was given.

Every script in scripts/ and ``fashionnet-train`` end the same way as ``indexer`` and argparse do:
a refused checkpoint, index, image or argument prints ``PROG: error: MESSAGE`` on stderr and exits
with status 2. Anything else is a bug and keeps its traceback.

    if __name__ == "__main__":
        sys.exit(run_main(main))
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Optional

# the checkout's own code: a ValueError raised there is a message for the user
_PROJECT = Path(__file__).resolve().parents[2]
_PROJECT_DIRS = ("fashionnet", "indexer", "scripts", "webui")
_PROJECT_PACKAGES = ("fashionnet", "indexer", "webui")


def _raised_by_project(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc``'s traceback is in this project's code."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    try:
        parts = Path(tb.tb_frame.f_code.co_filename).resolve().relative_to(_PROJECT).parts
    except ValueError:
        return False
    return bool(parts) and parts[0] in _PROJECT_DIRS


def is_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` says that the input was refused (the user's to fix), not that the code failed:
    a missing file; the index store's errors; the project's own ValueErrors (CheckpointError,
    ImageLoadError, ...); a plain ValueError raised by the project's code. A ValueError from inside
    a library (numpy, torch) is unexpected."""
    if isinstance(exc, FileNotFoundError):
        return True
    # IndexStoreError lives in a higher layer; a program that can raise it has imported it
    store = sys.modules.get("indexer.errors")
    if store is not None and isinstance(exc, store.IndexStoreError):
        return True
    if isinstance(exc, ValueError):
        return type(exc).__module__.split(".")[0] in _PROJECT_PACKAGES or _raised_by_project(exc)
    return False


def one_line(exc: BaseException) -> str:
    """The error's message on one line."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def run_main(main: Callable[[], Any], prog: Optional[str] = None) -> int:
    """Run a command's ``main()``; returns the exit status: main's own where it returns an int, else
    0, or 2 after ``PROG: error: MESSAGE`` on stderr for a refused input (:func:`is_refusal`).
    ``prog`` defaults to the program's name as argparse writes it."""
    try:
        status = main()
    except Exception as exc:
        if not is_refusal(exc):
            raise
        print(f"{prog or Path(sys.argv[0]).name}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    return status if isinstance(status, int) else 0
