"""Messages as visitors may read them: no path of the server's disk in what the page or the HTTP API shows.

An error names the file it is about, which tells the operator what to fix but tells a visitor how
the server is laid out. The folders a visitor knows by another name (the index, the gallery images)
are written by that name; any other absolute path is cut to its last part. The server's log keeps
the full message.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

# An absolute path (not inside a relative path, a URL or a home-relative path, nor right after a
# folder already replaced by its name, which is held as a NUL-fenced mark until the end).
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/\x00-])/(?:[^\s/'\"`\x00]+/)*([^\s/'\"`\x00]+)")
_MARK = "\x00{}\x00"


def hide_server_paths(message: str, roots: Mapping[str | os.PathLike, str]) -> str:
    """``message`` with each folder of ``roots`` (path -> the name visitors know it by; empty paths
    are skipped) written as its name, whether the message has it as given, absolute or with links
    resolved, and every other absolute path cut to ``…/`` and its last part."""
    spellings = []
    for mark, (root, name) in enumerate(roots.items()):
        if not str(root):
            continue
        path = Path(root)
        for spelling in {str(path.resolve()), str(path.absolute())}:
            if spelling != path.anchor:  # "/" itself is every path's start, not a folder to name
                spellings.append((spelling, mark, name))
    names = {}
    for spelling, mark, name in sorted(spellings, key=lambda s: len(s[0]), reverse=True):
        token = _MARK.format(chr(0xE000 + mark))  # a private-use character: never in a real message
        message = re.sub(re.escape(spelling) + r"(?![\w-])", token, message)
        names[token] = name
    message = _ABSOLUTE_PATH.sub(r"…/\1", message)
    for token, name in names.items():
        message = message.replace(token, name)
    return message
