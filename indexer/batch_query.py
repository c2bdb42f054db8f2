"""Many query photos at once: ``indexer query INDEX photos/ --out results.csv`` (or .jsonl).

Each photo's top k are written as they come (a killed run keeps what it wrote); photos that cannot
be read are skipped and reported, and the throughput is printed at the end.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
from tqdm.auto import tqdm

from fashionnet.data.images import ImageLoadError
from indexer.embedding import IMAGE_SUFFIXES, list_image_files
from indexer.close_match import with_match
from indexer.search import Filters, SearchEngine, gallery_column

OUTPUT_FORMATS = (".csv", ".jsonl")
ROW_FIELDS = ("query", "rank", "score", "match", "id", "item_id", "category", "clothes_type", "image_path",
              "query_category", "query_category_prob", "query_unfamiliar")


@dataclass
class BatchReport:
    queries: int = 0
    rows: int = 0
    seconds: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.queries / self.seconds if self.seconds > 0 else 0.0


def query_inputs(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """Photos from files, folders (recursively) and ``.txt`` lists of paths (one per line, relative
    to the list's folder unless absolute; blank lines and ``#`` comments ignored)."""
    photos: list[str] = []
    for given in map(Path, inputs):
        if given.suffix.lower() == ".txt" and given.is_file():
            for line in given.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    path = Path(line)
                    photos.append(str(path if path.is_absolute() else given.parent / path))
        elif given.is_file() and given.suffix.lower() not in IMAGE_SUFFIXES:
            photos.append(str(given))  # let the loader say what is wrong with it
        else:
            photos.extend(str(p) for p, _ in list_image_files([given]))
    return photos


def check_output(out: Optional[str | os.PathLike]) -> Optional[Path]:
    if out is None:
        return None
    out = Path(out)
    if out.suffix.lower() not in OUTPUT_FORMATS:
        raise ValueError(f"--out {out}: write .csv or .jsonl")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name ending in .csv or .jsonl")
    if not out.absolute().parent.is_dir():
        raise ValueError(f"--out {out}: the folder {out.absolute().parent} does not exist")
    return out


def query_many(engine: SearchEngine, photos: Sequence[str], out: Path, k: int = 20, filters: Optional[Filters] = None,
               nprobe: Optional[int] = None, progress: bool = True, per_item: bool = True, min_score: Optional[float] = None) -> BatchReport:
    """Query every photo and write its top k to ``out`` (.csv or .jsonl), one row per result, as
    ``indexer query`` shows them (:func:`shown_rows`), each with whether it is a close match."""
    report = BatchReport()
    filters = filters or Filters()
    started = time.perf_counter()
    close = engine.close_match
    as_csv = out.suffix.lower() == ".csv"
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS, extrasaction="ignore") if as_csv else None
        if writer:
            writer.writeheader()
        for photo in tqdm(photos, desc="querying", unit="photo", disable=not progress, dynamic_ncols=True):
            try:
                prediction = engine.predictor.predict(photo)
            except ImageLoadError as exc:
                report.skipped.append((photo, exc.problem))
                continue
            matches = engine.search_embedding(prediction.embedding, k, filters, nprobe, per_item, min_score=min_score)
            matches, _ = with_match(shown_rows(matches), close, prediction.unfamiliar)
            for row in matches.to_dict(orient="records"):
                record = {name: _plain(row.get(name)) for name in ROW_FIELDS}
                record.update(query=photo, query_category=prediction.category, query_category_prob=round(prediction.category_prob, 6),
                              query_unfamiliar=prediction.unfamiliar)
                if writer:
                    writer.writerow(record)
                else:
                    f.write(json.dumps(record) + "\n")
                report.rows += 1
            report.queries += 1
            f.flush()
    report.seconds = time.perf_counter() - started
    return report


def shown_rows(matches):
    """Result rows with category and clothes type as the page shows them: the gallery's label where
    it has one, else the model's prediction for that gallery photo."""
    rows = matches.copy()
    if len(rows):
        rows["category"] = gallery_column(rows, "category").astype(object)
        rows["clothes_type"] = [None if pd.isna(t) else int(t) for t in gallery_column(rows, "clothes_type")]
    return rows


def _plain(value):
    """JSON/CSV-friendly scalars (pandas NA and numpy numbers become None and Python numbers)."""
    try:
        if value is None or pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value.item() if hasattr(value, "item") else value


def print_report(report: BatchReport, out: Path) -> None:
    print(f"{report.queries} photos queried in {report.seconds:.1f} s ({report.per_second:.1f} photos/s); "
          f"{report.rows} rows written to {out}")
    if report.skipped:
        print(f"skipped {len(report.skipped)} unreadable photo(s):", file=sys.stderr)
        for path, problem in report.skipped[:50]:
            print(f"  {path}: {problem}", file=sys.stderr)
