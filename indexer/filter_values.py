"""The values search filters take, spelled one way for the command line, the HTTP API and catalogue
metadata files: clothes types by number or name, attributes as repeated or comma-separated names,
and the error for a value neither the index nor its model knows.

No torch, pandas or FastAPI here: ``indexer --help`` parses ``--clothes-type`` with it.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional, Sequence

# fashionnet.landmarks' numbering (1 upper, 2 lower, 3 full body), kept here without its numpy import
CLOTHES_TYPES = {1: "upper", 2: "lower", 3: "full"}
_BY_NAME = {name: number for number, name in CLOTHES_TYPES.items()}
_ALIASES = {"upper_body": 1, "lower_body": 2, "full_body": 3}
CLOTHES_TYPE_CHOICES = "1, 2, 3, upper, lower or full"


class UnknownFilterValue(ValueError):
    """A filter value the index and its model do not know; carries the values they do."""

    def __init__(self, field: str, value, allowed: Sequence):
        self.field, self.value, self.allowed = field, value, list(allowed)
        shown = ", ".join(map(str, self.allowed[:60])) + (f", ... ({len(self.allowed)} in all)" if len(self.allowed) > 60 else "")
        super().__init__(f"{field} {value!r} is not known to this index or its model; allowed: {shown or '(none)'}")


def parse_clothes_type(value) -> Optional[int]:
    """1, 2, 3 or their names (upper, lower, full; any case; "full body" too) as 1, 2, 3; None for
    None or "". ValueError naming the allowed spellings otherwise."""
    if value is None or isinstance(value, bool):
        if value is None:
            return None
        raise ValueError(f"clothes_type must be {CLOTHES_TYPE_CHOICES}, got {value!r}")
    text = str(value).strip().lower()
    if text == "":
        return None
    if re.fullmatch(r"[123](\.0)?", text):
        return int(float(text))
    key = re.sub(r"[\s-]+", "_", text)
    if key in _BY_NAME or key in _ALIASES:
        return _BY_NAME.get(key) or _ALIASES[key]
    raise ValueError(f"clothes_type must be {CLOTHES_TYPE_CHOICES}, got {value!r}")


def clothes_type_argument(value: str) -> int:
    """argparse ``type=`` for ``--clothes-type``: argparse turns the ValueError into a usage error."""
    import argparse

    try:
        parsed = parse_clothes_type(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if parsed is None:
        raise argparse.ArgumentTypeError(f"clothes type must be {CLOTHES_TYPE_CHOICES}")
    return parsed


def split_attributes(values: Optional[Iterable]) -> tuple[str, ...]:
    """Repeated and comma-separated attribute fields as one tuple of names (a bare string is one field)."""
    if isinstance(values, str):
        values = [values]
    names = []
    for value in values or ():
        names.extend(part.strip() for part in str(value).split(","))
    return tuple(name for name in names if name)


def check_known(field: str, value: str, known: Iterable[str]) -> None:
    """UnknownFilterValue unless ``value`` is one of ``known`` (compared without case)."""
    known = sorted({str(k) for k in known}, key=str.lower)
    if str(value).lower() not in {k.lower() for k in known}:
        raise UnknownFilterValue(field, value, known)
