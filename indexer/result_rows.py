"""The metadata rows that go with search results: taken from an index's table by id, cheaply."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def query_friendly(metadata: pd.DataFrame) -> pd.DataFrame:
    """Arrow-backed string columns as plain Python objects: every query takes k rows of the table,
    and one take over a single object block costs far less than a take per Arrow column (the
    indexer's tables have about 40 columns)."""
    strings = [c for c, dtype in metadata.dtypes.items() if isinstance(dtype, pd.StringDtype)]
    return metadata.astype({c: object for c in strings}) if strings else metadata


def rows_of(table: pd.DataFrame, ids: np.ndarray, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows of ``table`` (indexed by id) for ``ids``, in their order, numbered from 0; only
    ``columns`` where given (those the table lacks are left out); all NaN for an unknown id."""
    wanted = None if columns is None else [table.columns.get_loc(c) for c in columns if c in table.columns]
    positions = table.index.get_indexer(ids)
    if (positions >= 0).all():
        # by position, rows and columns in one step: cheaper than reindex() by label, and selecting
        # columns first would copy them whole (the query path)
        rows = table.take(positions) if wanted is None else table.iloc[positions, wanted]
    else:
        rows = table.reindex(ids) if wanted is None else table.reindex(ids).iloc[:, wanted]
    return rows.reset_index(drop=True)


def result_rows(scores: np.ndarray, ids: np.ndarray, table: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per found neighbour of (Q, k) ``scores`` / ``ids`` (-1 where none): query, rank,
    score, id, then its metadata columns."""
    valid = ids >= 0
    query, position = np.nonzero(valid)
    head = pd.DataFrame({"query": query.astype(np.int64), "rank": position.astype(np.int64) + 1, "score": scores[valid], "id": ids[valid]})
    return pd.concat([head, rows_of(table, ids[valid], columns)], axis=1)
