"""The DeepFashion list-file format, parsed with errors that name the file and the line.

Every ``Anno/list_*.txt`` and ``Eval/list_eval_partition.txt`` file is a count line, a header line
(``list_item_*`` has none), then whitespace-separated records. :func:`_read_table` reads files of
many records in bulk (pandas' C parser) and :func:`_read_records` small ones line by line (for names
that contain spaces); the checks below turn any malformed record into an :class:`AnnotationError`
with the file and the 1-based line. What each file means is :mod:`fashionnet.data.annotation_files`.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import pandas as pd

PathLike = Union[str, os.PathLike]


class AnnotationError(ValueError):
    """A DeepFashion annotation file (or an image it lists) is unusable.

    ``path`` is the annotation file, ``line`` the 1-based line in it (None when the problem is the
    whole file), and the message reads ``"PATH:LINE: problem"``.
    """

    def __init__(self, path: PathLike, line: Optional[int], problem: str):
        self.path = str(path)
        self.line = None if line is None else int(line)
        self.problem = problem
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        super().__init__(f"{where}: {problem}")


@dataclass
class _Preamble:
    """The count line and header line of a list file, and its text."""

    path: Path
    text: str
    header: list[str]
    first_line: int  # 1-based file line of the first record
    count: int


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # The Consumer-to-shop attribute files hold Chinese names; older copies are GB-encoded.
        text = data.decode("gb18030", errors="replace")
    return text.lstrip("\ufeff")


def _looks_like_record(tokens: list[str]) -> bool:
    """True when a supposed header line is really data (an image path or a number)."""
    first = tokens[0]
    if "/" in first or first.lower().endswith((".jpg", ".jpeg", ".png")):
        return True
    try:
        float(first)
        return True
    except ValueError:
        return False


def _read_preamble(path: Path, has_header: bool, required: bool) -> Optional[_Preamble]:
    """Check the count line (line 1) and the header line (line 2, when the file has one)."""
    if not path.is_file():
        if required:
            raise AnnotationError(path, None, f"required annotation file {path.name} is missing")
        return None
    text = _read_text(path)
    head = text.split("\n", 2)
    count_line = head[0].strip()
    if not count_line.isdigit():
        raise AnnotationError(path, 1, f"expected the number of records on the first line, found {count_line!r}")
    header: list[str] = []
    if has_header:
        header = head[1].split() if len(head) > 1 else []
        if not header:
            raise AnnotationError(path, 2, "expected the header line (column names) on line 2")
        if _looks_like_record(header):
            raise AnnotationError(path, 2, f"expected the header line (column names) on line 2, found a record: {head[1].strip()!r}")
    return _Preamble(path, text, header, 3 if has_header else 2, int(count_line))


def _check_count(pre: _Preamble, found: int) -> None:
    if found != pre.count:
        raise AnnotationError(pre.path, 1, f"the count line says {pre.count} records but the file has {found}")


@dataclass
class _Table:
    """The records of one list file as a frame (columns 0..width-1, NaN past the end of a short
    row), with the file line of every record for error messages."""

    path: Path
    header: list[str]
    frame: pd.DataFrame
    lines: np.ndarray  # (N,) 1-based file line of each record
    text: str
    _file_lines: Optional[list[str]] = None

    def __len__(self) -> int:
        return len(self.frame)

    def error(self, row: int, problem: str) -> AnnotationError:
        return AnnotationError(self.path, int(self.lines[row]), problem)

    def tokens(self, row: int) -> list[str]:
        """The raw tokens of a record; only used to describe an error."""
        if self._file_lines is None:
            self._file_lines = self.text.split("\n")
        return self._file_lines[int(self.lines[row]) - 1].split()

    def texts(self, column: int) -> np.ndarray:
        return self.frame[column].to_numpy(dtype=object)

    def value_counts(self) -> np.ndarray:
        return self.frame.notna().sum(axis=1).to_numpy()


def _read_table(path: Path, width: int, text_columns: tuple[int, ...], row_format: str, *, has_header: bool = True, required: bool = True) -> Optional[_Table]:
    """Parse a list file whose records have at most ``width`` whitespace-separated values.

    pandas' C parser does the bulk work (the real files have up to 240k rows); blank lines are
    kept as empty rows while parsing so every record keeps its file line number.
    """
    pre = _read_preamble(path, has_header, required)
    if pre is None:
        return None
    parts = pre.text.split("\n", pre.first_line - 1)
    body = parts[-1] if len(parts) == pre.first_line else ""
    with warnings.catch_warnings():
        # index_col=False + this warning as an error: rows longer than `width` must fail loudly,
        # never become an index or be cut short.
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            frame = pd.read_csv(
                io.StringIO(body),
                sep=r"\s+",
                header=None,
                names=range(width),
                index_col=False,
                dtype={c: str for c in text_columns},
                quoting=csv.QUOTE_NONE,
                skip_blank_lines=False,
                low_memory=False,
            )
        except pd.errors.EmptyDataError:
            frame = pd.DataFrame({c: pd.Series(dtype=object) for c in range(width)})
        except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
            for number, line in enumerate(body.split("\n"), start=pre.first_line):
                if len(line.split()) > width:
                    raise AnnotationError(path, number, f"expected {row_format}, found {len(line.split())} values") from None
            raise AnnotationError(path, None, f"cannot parse the file: {exc}") from None
    numbers = np.arange(len(frame), dtype=np.int64) + pre.first_line
    blank = frame.isna().all(axis=1).to_numpy()
    if blank.any():
        frame = frame[~blank].reset_index(drop=True)
        numbers = numbers[~blank]
    _check_count(pre, len(frame))
    return _Table(path, pre.header, frame, numbers, pre.text)


def _row_error(table: _Table, row: int, expected: int, row_format: str) -> AnnotationError:
    """Describe a record whose number of values is wrong."""
    tokens = table.tokens(row)
    if len(tokens) != expected:
        return table.error(row, f"expected {row_format}, found {len(tokens)} values")
    # Right length: pandas read one of the tokens ("nan", "NA", ...) as a missing value.
    missing = np.flatnonzero(table.frame.iloc[row].isna().to_numpy()[: len(tokens)])
    k = int(missing[0]) if missing.size else 0
    return table.error(row, f"value {k + 1} {tokens[k]!r} is not a usable value")


def _check_width(table: _Table, expected, row_format: str) -> None:
    """Every record must have exactly ``expected`` values (an int, or one per record)."""
    counts = table.value_counts()
    expected = np.broadcast_to(np.asarray(expected), counts.shape)
    bad = np.flatnonzero(counts != expected)
    if bad.size:
        i = int(bad[0])
        raise _row_error(table, i, int(expected[i]), row_format)


def _fixed_columns(table: _Table, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Check that every record has exactly ``len(names)`` values; return them as object columns."""
    _check_width(table, len(names), f"{len(names)} values ({' '.join(names)})")
    return {name: table.texts(c) for c, name in enumerate(names)}


def _numbers(table: _Table, columns: list[int], what: str, *, rows: Optional[np.ndarray] = None, integer: bool = False) -> np.ndarray:
    """(rows, columns) float64 values of numeric columns; a bad token raises naming its line."""
    rows = np.arange(len(table)) if rows is None else np.asarray(rows)
    block = table.frame.iloc[rows][columns]
    out = np.empty(block.shape, dtype=np.float64)
    for j, column in enumerate(columns):
        values = block[column]
        if not pd.api.types.is_numeric_dtype(values):  # pandas kept the column as text: a bad token
            converted = pd.to_numeric(values, errors="coerce")
            bad = np.flatnonzero((converted.isna() & values.notna()).to_numpy())
            if bad.size:
                raise table.error(int(rows[bad[0]]), f"{what}: {values.iloc[bad[0]]!r} is not a number")
            values = converted
        out[:, j] = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(out)
    if integer:
        bad |= np.isfinite(out) & (out != np.round(out))
    if bad.any():
        r, j = (int(v) for v in np.argwhere(bad)[0])
        token = table.tokens(int(rows[r]))[columns[j]]
        raise table.error(int(rows[r]), f"{what}: {token!r} is not {'an integer' if integer else 'a finite number'}")
    return out


def _check_splits(table: _Table, splits: np.ndarray, allowed: tuple[str, ...]) -> None:
    bad = np.flatnonzero(~pd.Series(splits, dtype=object).isin(allowed).to_numpy())
    if bad.size:
        i = int(bad[0])
        raise table.error(i, f"bad evaluation_status {splits[i]!r} (expected one of {', '.join(allowed)})")


def _check_unique_images(table: _Table, names: np.ndarray) -> np.ndarray:
    """Boolean mask of records to keep: an exact repeat of a record is dropped, a conflicting one is an error."""
    names = pd.Series(names, dtype=object)
    repeated = names.duplicated(keep="first").to_numpy()
    if repeated.any():
        first_of: dict[str, int] = {}
        for i, name in enumerate(names):
            first_of.setdefault(name, i)
        for i in np.flatnonzero(repeated):
            j = first_of[names.iat[i]]
            if table.tokens(int(i)) != table.tokens(j):
                raise table.error(int(i), f"{names.iat[i]} is listed again with different values (first at line {table.lines[j]})")
    return ~repeated


@dataclass
class _Records:
    """A small list file read line by line (for rows whose names may contain spaces)."""

    path: Path
    header: list[str]
    records: list[list[str]]
    lines: list[int]

    def error(self, record: int, problem: str) -> AnnotationError:
        return AnnotationError(self.path, self.lines[record], problem)


def _read_records(path: Path, *, required: bool = True) -> Optional[_Records]:
    pre = _read_preamble(path, True, required)
    if pre is None:
        return None
    records, lines = [], []
    for number, line in enumerate(pre.text.split("\n")[pre.first_line - 1 :], start=pre.first_line):
        tokens = line.split()
        if tokens:
            records.append(tokens)
            lines.append(number)
    _check_count(pre, len(records))
    return _Records(path, pre.header, records, lines)
