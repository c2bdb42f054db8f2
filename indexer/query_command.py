"""``indexer query INDEX PHOTO...``: one model load, then each photo answered in turn, as the page
answers it: the labels where the gallery has them and the model's predictions where it does not,
whether the best result is a close match (:mod:`indexer.close_match`), and whether the photo looks
like a garment photo at all. ``--out`` writes every answer to a file instead (:mod:`indexer.batch_query`).

Loading the model takes seconds, so a line on stderr says so before it starts.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Optional

import pandas as pd

from fashionnet.data.images import ImageLoadError
from indexer.api_json import gallery_rows_json
from indexer.batch_query import check_output, print_report, query_inputs, query_many, shown_rows
from indexer.filter_values import CLOTHES_TYPES
from indexer.search import Filters, QueryResult, SearchEngine

TABLE_COLUMNS = ("rank", "score", "match", "item_id", "category", "clothes_type", "image_path", "fields")
LABEL_KEYS = ("category_source", "clothes_type_source", "attributes", "attributes_source", "fields")


def run_query(args) -> int:
    if args.k < 1:
        raise ValueError(f"-k must be at least 1, got {args.k}")
    out = check_output(args.out)
    photos = query_inputs(args.inputs)
    if not photos:
        raise ValueError(f"no photos found in {' '.join(args.inputs)}")
    print(f"indexer query: loading the model and the index {args.index} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    engine = SearchEngine.open(args.index, args.checkpoint, device=args.device, image_root=args.image_root, runtime=args.runtime,
                               backend=args.backend, milvus_uri=args.milvus_uri)
    print(f"indexer query: ready in {time.perf_counter() - started:.1f} s; {len(photos)} photo(s) to answer", file=sys.stderr, flush=True)
    filters = Filters(args.clothes_type, args.category, tuple(args.attribute), args.exclude_unfamiliar)
    engine.check_filters(filters)  # an unknown category or attribute is an error listing the known ones
    if out is not None:
        report = query_many(engine, photos, out, k=args.k, filters=filters, nprobe=args.nprobe, progress=not args.no_progress,
                            per_item=not args.per_image, min_score=args.min_score)
        print_report(report, out)
        return 0 if report.queries else 1
    answers, failed, printed = [], 0, 0
    for photo in photos:
        try:
            result = engine.query(photo, k=args.k, clothes_type=args.clothes_type, nprobe=args.nprobe, category=args.category,
                                  attributes=args.attribute, per_item=not args.per_image, min_score=args.min_score,
                                  exclude_unfamiliar=args.exclude_unfamiliar)
        except ImageLoadError as exc:
            if len(photos) == 1:
                raise
            print(f"indexer query: skipped {photo}: {exc.problem}", file=sys.stderr)  # one bad photo of many: answer the rest
            failed += 1
            continue
        if args.json:
            answers.append(answer_json(photo, result))
        else:
            print_answer(photo, result, separate=printed > 0)
            printed += 1
    if args.json:
        print(json.dumps(answers[0] if len(photos) == 1 else answers, indent=2))
    return 1 if failed == len(photos) else 0


def answer_json(photo: str, result: QueryResult) -> dict:
    rows = shown_rows(result.matches)
    columns = [c for c in ("rank", "score", "match", "id", "item_id", "category", "clothes_type", "image_path") if c in rows]
    results = json.loads(rows[columns].to_json(orient="records"))
    # where each label came from (the shop's or the model's) and the shop's own fields, as the API says them
    for entry, shown in zip(results, gallery_rows_json(result.matches)):
        entry.update({key: shown[key] for key in LABEL_KEYS})
    close = result.close_match
    return {"query": str(photo), "unfamiliar": result.prediction.unfamiliar, "match": result.match,
            "close_match_score": None if close is None else close.min_score,
            "prediction": result.prediction.as_dict(), "results": results}


def headline(photo: str, result: QueryResult) -> list[str]:
    """What the page says above its results, as lines of text."""
    p = result.prediction
    if p.unfamiliar:
        return [f"query {photo}: this does not look like a garment photo (unfamiliarity {p.unfamiliarity:.2f}; "
                "garment photos score about 1), so its category and results mean little"]
    kind = f", {CLOTHES_TYPES[p.clothes_type]}" if p.clothes_type in CLOTHES_TYPES else ""
    if p.category is not None and not p.category_sure:
        likely = " or ".join(f"{name} ({prob:.2f})" for name, prob in p.likely_categories())
        lines = [f"query {photo}: category not sure, most likely {likely}"]
    else:
        lines = [f"query {photo}: predicted {p.category or '?'} ({p.category_prob:.2f}){kind}"]
    if p.landmarks_placed is False:
        lines.append("the model cannot place this garment's landmarks: most points are unsure")
    close, best = result.close_match, _best(result.matches)
    if close is not None and best is not None:
        lines.append(f"close match: best score {best:.3f} (a close match scores {close.min_score:.3f} or more)" if result.match else
                     f"no close match in this catalogue: best score {best:.3f}, under {close.min_score:.3f}; the nearest items:")
    return lines


def _best(matches: pd.DataFrame) -> Optional[float]:
    return float(matches["score"].max()) if len(matches) else None


def print_answer(photo: str, result: QueryResult, separate: bool = False) -> None:
    if separate:
        print()
    print("\n".join(headline(photo, result)))
    if result.matches.empty:
        print("no gallery image passes these filters")
        return
    rows = shown_rows(result.matches)
    rows["category"] = rows["category"].map(lambda c: c if isinstance(c, str) and c else "?")
    rows["clothes_type"] = rows["clothes_type"].map(lambda t: CLOTHES_TYPES.get(t, "?"))
    if "match" in rows:
        if rows["match"].isna().all():  # an index without a close-match score cannot tell
            rows = rows.drop(columns="match")
        else:
            rows["match"] = ["?" if pd.isna(m) else ("yes" if m else "no") for m in rows["match"]]
    fields = [shown["fields"] for shown in gallery_rows_json(result.matches)]
    if any(fields):  # the shop's own fields (title, price, ...), where the catalogue gave any
        rows["fields"] = ["; ".join(f"{k}={v}" for k, v in f.items()) if f else "" for f in fields]
    columns = [c for c in TABLE_COLUMNS if c in rows]
    print(rows[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
