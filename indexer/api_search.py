"""``POST /search`` and ``POST /search/batch``: one photo, or several in one request, against the
served index, with the same filters, page (``offset``, ``k``) and score threshold (``min_score``).

A batch answers each photo in the order sent; a photo that cannot be read gets its own error entry
and the others are still answered. A bad shared field (k, a filter value) fails the whole request,
as it would fail every photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable, Optional

from fastapi import Depends, File, Form, UploadFile

from indexer.api_errors import ApiError
from indexer.api_json import gallery_rows_json, prediction_json
from indexer.api_models import BatchAnswer, SearchAnswer, error_responses
from indexer.filter_values import CLOTHES_TYPE_CHOICES, parse_clothes_type, split_attributes

MAX_K = 1000
MAX_OFFSET = 10_000
MAX_BATCH = 32  # photos per batch request: each costs a forward pass while the client waits


@dataclass
class SearchOptions:
    k: int
    offset: int
    min_score: Optional[float]
    clothes_type: Optional[int]
    category: Optional[str]
    attributes: tuple[str, ...]
    nprobe: Optional[int]
    per_item: bool
    exclude_unfamiliar: bool = False

    def echo(self, file: str) -> dict:
        return {"file": file, "k": self.k, "offset": self.offset, "min_score": self.min_score, "per_item": self.per_item,
                "exclude_unfamiliar": self.exclude_unfamiliar,
                "filters": {"clothes_type": self.clothes_type, "category": self.category, "attributes": list(self.attributes)}}


def search_options(
        k: Annotated[int, Form(ge=1, le=MAX_K, description="results per page")] = 20,
        offset: Annotated[int, Form(ge=0, le=MAX_OFFSET, description="results skipped first: offset=k gives the second page")] = 0,
        min_score: Annotated[Optional[float], Form(ge=-1, le=1, description="leave out results scored below this (cosine, -1 to 1)")] = None,
        clothes_type: Annotated[Optional[str], Form(description=f"only this clothes type: {CLOTHES_TYPE_CHOICES} (any case)")] = None,
        category: Annotated[Optional[str], Form(description="only this category (the shop's label where an image has one, else "
                                                            "predicted); an unknown one is refused with the known ones")] = None,
        attributes: Annotated[list[str], Form(description="every one required; repeat the field or separate by commas")] = [],
        nprobe: Annotated[Optional[int], Form(ge=1, description="IVF lists visited (IVF indexes only)")] = None,
        per_item: Annotated[bool, Form(description="k distinct items, each at its best image; false: the k nearest images")] = True,
        exclude_unfamiliar: Annotated[bool, Form(description="leave out gallery photos flagged, when added, as not garment photos")] = False,
) -> SearchOptions:
    try:
        parsed_type = parse_clothes_type(clothes_type)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", str(exc), [{"field": "clothes_type", "problem": str(exc)}]) from None
    return SearchOptions(k, offset, min_score, parsed_type, category or None, split_attributes(attributes), nprobe, per_item,
                         exclude_unfamiliar)


def add_search_routes(app, fresh_engine: Callable) -> None:
    from fashionnet.data.images import ImageLoadError, load_image
    from indexer.close_match import with_match
    from indexer.search import Filters

    def answer(engine, photo, options: SearchOptions) -> dict:
        prediction = engine.predictor.predict(photo)
        filters = Filters(options.clothes_type, options.category, options.attributes, options.exclude_unfamiliar)
        close = engine.close_match
        rows = engine.search_embedding(prediction.embedding, options.k, filters, options.nprobe, options.per_item,
                                       options.offset, options.min_score)
        rows, match = with_match(rows, close, prediction.unfamiliar)
        last_page = len(rows) < options.k  # fewer than asked: the gallery (or the threshold) ran out
        return {"prediction": prediction_json(prediction), "results": gallery_rows_json(rows),
                "next_offset": None if last_page else options.offset + options.k,
                "match": match, "close_match_score": None if close is None else close.min_score, "unfamiliar": prediction.unfamiliar}

    def checked_engine(options: SearchOptions):
        engine = fresh_engine()
        engine.check_filters(Filters(options.clothes_type, options.category, options.attributes, options.exclude_unfamiliar))
        return engine

    @app.post("/search", response_model=SearchAnswer, responses=error_responses(401, 403, 413, 422, 503),
              summary="The best gallery items (each at its best image) for a photo: a page of k, optionally filtered")
    def search(image: Annotated[UploadFile, File(description="the query photo")],
               options: Annotated[SearchOptions, Depends(search_options)]):
        name = image.filename or "<upload>"
        engine = checked_engine(options)  # an unknown filter value is refused before the photo is decoded
        photo = load_image(image.file.read(), source=name)
        return {"query": options.echo(name), **answer(engine, photo, options)}

    @app.post("/search/batch", response_model=BatchAnswer, responses=error_responses(401, 403, 413, 422, 503),
              summary=f"Several photos in one request (at most {MAX_BATCH}): each answered in order, or given its own error")
    def search_batch(images: Annotated[list[UploadFile], File(description=f"the query photos, 1 to {MAX_BATCH}")],
                     options: Annotated[SearchOptions, Depends(search_options)]):
        if len(images) > MAX_BATCH:
            raise ApiError(422, "invalid_request", f"images: at most {MAX_BATCH} photos per batch, got {len(images)}",
                           [{"field": "images", "problem": f"at most {MAX_BATCH} photos"}])
        engine = checked_engine(options)
        answers = []
        for position, upload in enumerate(images):
            name = upload.filename or f"<upload {position + 1}>"
            try:
                entry = answer(engine, load_image(upload.file.read(), source=name), options)
            except ImageLoadError as exc:
                entry = {"error": {"code": "invalid_image", "message": str(exc), "details": {"file": exc.source, "problem": exc.problem}}}
            answers.append({"index": position, "file": name, **entry})
        return {"query": options.echo(f"{len(images)} photos"), "count": len(answers), "answers": answers}
