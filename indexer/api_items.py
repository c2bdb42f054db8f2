"""The item endpoints of the HTTP API: read an item's images, add photos of an item with the shop's
own data (category, clothes type, attributes, title, price, seller, any other field), change that
data, and remove the item.

Writes go through the engine, which holds the index's cross-process writer lock and reloads the
index afterwards; ``writes`` keeps this server's own writes one at a time.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from typing import Annotated, Callable, Optional

from fastapi import Body, File, Form, UploadFile

from indexer.api_errors import ApiError
from indexer.api_json import gallery_rows_json
from indexer.api_models import Added, CatalogueUpdate, ItemImages, Removed, Updated, error_responses
from indexer.catalogue_metadata import Catalogue, CatalogueFileError, CatalogueRow, stored_values
from indexer.filter_values import CLOTHES_TYPE_CHOICES, split_attributes

ITEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ITEM_ID_RULE = "item_id must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"


def catalogue_for_add(item_id: str, category, clothes_type, attributes, free: dict) -> Optional[Catalogue]:
    """An add's catalogue fields as a one-row catalogue for the item (None when none was given)."""
    record = {"item_id": item_id, "category": category, "clothes_type": clothes_type,
              "attributes": list(split_attributes(attributes)) or None, **free}
    record = {k: v for k, v in record.items() if v is not None and v != ""}
    try:
        values = stored_values(record, "the request")
    except CatalogueFileError as exc:
        raise ApiError(422, "invalid_request", str(exc).replace("the request: ", "")) from None
    return Catalogue("the request", [CatalogueRow(0, None, item_id, values)]) if values else None


def add_item_routes(app, engine, fresh_engine: Callable, uploads, writes: threading.Lock, reject_unfamiliar: bool = False) -> None:
    """``reject_unfamiliar``: the server refuses photos that do not look like garment photos in every
    add (``indexer serve --reject-unfamiliar``); otherwise a request may ask for it."""
    from indexer.uploads import real

    server_rejects = reject_unfamiliar

    def changeable():
        if uploads is None or engine.index_dir is None:
            raise ApiError(409, "read_only", "this index was loaded from memory and cannot be changed")

    @app.get("/items/{item_id}", response_model=ItemImages, responses=error_responses(401, 403, 404, 422),
             summary="Every gallery image of one item, with the shop's data")
    def item(item_id: str):
        rows = fresh_engine().item_images(item_id)
        if len(rows) == 0:
            raise ApiError(404, "unknown_item", f"item {item_id!r} is not in the index")
        return {"item_id": item_id, "count": len(rows), "images": gallery_rows_json(rows)}

    @app.post("/items", response_model=Added, responses=error_responses(401, 403, 409, 413, 422, 503),
              summary="Add one or more photos of an item (new or existing), with the shop's data for the item")
    def add_item(images: Annotated[list[UploadFile], File(description="one or more photos")],
                 item_id: Annotated[Optional[str], Form(description="the item's id (default: a new one)")] = None,
                 category: Annotated[Optional[str], Form(description="the shop's category; filters read it before the prediction")] = None,
                 clothes_type: Annotated[Optional[str], Form(description=f"the shop's clothes type: {CLOTHES_TYPE_CHOICES}")] = None,
                 attributes: Annotated[list[str], Form(description="the shop's attributes; repeat the field or separate by commas")] = [],
                 title: Annotated[Optional[str], Form(description="free field, returned with each result")] = None,
                 price: Annotated[Optional[str], Form(description="free field, returned with each result")] = None,
                 seller: Annotated[Optional[str], Form(description="free field, returned with each result")] = None,
                 fields: Annotated[Optional[str], Form(description='any other free fields, as a JSON object: {"brand": "...", ...}')] = None,
                 reject_unfamiliar: Annotated[bool, Form(description="refuse photos that do not look like garment photos, naming "
                                                                     "each (default: add them, flagged)")] = False):
        changeable()
        item_id = item_id.strip() if item_id else f"item-{secrets.token_hex(6)}"
        if not ITEM_ID.match(item_id):
            raise ApiError(422, "invalid_item_id", ITEM_ID_RULE)
        free = _json_object(fields)
        free.update({k: v for k, v in (("title", title), ("price", price), ("seller", seller)) if v is not None})
        shop_metadata = catalogue_for_add(item_id, category, clothes_type, attributes, free)
        files = [(f.filename or f"upload-{i + 1}", f.file.read()) for i, f in enumerate(images)]
        with writes, uploads.lock():  # held until the add commits: a tidy-up never sees an upload in flight
            folder = uploads.new_upload()
            added_paths: set[str] = set()
            try:
                saved, refused = uploads.save(folder, item_id, files)
                duplicates, report = [], None
                if saved:
                    report = engine.add_images([folder], shop_metadata=shop_metadata, reject_unfamiliar=reject_unfamiliar or server_rejects)
                    for path, problem in [*report.skipped, *report.refused]:
                        refused.append({"file": saved.get(real(path), path), "problem": problem})
                    duplicates = [{"file": saved.get(real(path), path), "problem": problem} for path, problem in report.duplicates]
                    not_added = {real(p) for p, _ in [*report.skipped, *report.refused, *report.duplicates]}
                    added_paths = set(saved) - not_added
            finally:
                uploads.discard(folder, keep=added_paths)
        count = int(report.count if report is not None else engine.index.ntotal)
        if not added_paths:
            unfamiliar = bool(report and report.refused) and len(report.refused) == len(refused)
            status, code = (422, "unfamiliar_image" if unfamiliar else "invalid_image") if refused else (409, "duplicate")
            what = "; ".join(f"{r['file']}: {r['problem']}" for r in refused + duplicates)
            raise ApiError(status, code, f"nothing was added; the index is unchanged ({count} images). {what}",
                           {"skipped": refused, "duplicates": duplicates, "count": count})
        rows = engine.item_images(item_id)
        rows = rows[[real(p) in added_paths for p in rows["image_path"].astype(str)]]
        flagged = [saved.get(real(f.path), f.path) for f in report.flagged if real(f.path) in added_paths]
        return {"item_id": item_id, "added": len(added_paths), "count": count, "images": gallery_rows_json(rows),
                "skipped": refused, "duplicates": duplicates, "flagged": flagged}

    @app.patch("/items/{item_id}", response_model=Updated, responses=error_responses(401, 403, 404, 409, 422, 503),
               summary="Change the shop's data of every image of an item (JSON body; fields left out stay as they are)")
    def update_item(item_id: str, update: Annotated[CatalogueUpdate, Body()]):
        changeable()
        given = update.model_dump(exclude_unset=True)
        record = {"item_id": item_id, **{k: v for k, v in given.items() if k != "fields" and v is not None}}
        try:
            values = stored_values(record, "the request")
        except CatalogueFileError as exc:
            raise ApiError(422, "invalid_request", str(exc).replace("the request: ", "")) from None
        names = {"category": "category", "clothes_type": "clothes_type", "attributes": "catalogue_attributes"}
        cleared = {names[k]: None for k, v in given.items() if k in names and v in (None, [])}
        with writes:
            updated = engine.update_item(item_id, {**cleared, **values}, given.get("fields"))
        if updated == 0:
            raise ApiError(404, "unknown_item", f"item {item_id!r} is not in the index; nothing changed")
        rows = engine.item_images(item_id)
        return {"item_id": item_id, "updated": updated, "count": len(rows), "images": gallery_rows_json(rows)}

    @app.delete("/items/{item_id}", response_model=Removed, responses=error_responses(401, 403, 404, 409, 422, 503),
                summary="Remove every image of an item")
    def delete_item(item_id: str):
        if engine.index_dir is None:
            raise ApiError(409, "read_only", "this index was loaded from memory and cannot be changed")
        with writes:
            removed = engine.remove_items([item_id])  # deletes the item's uploaded files too
        if removed == 0:
            raise ApiError(404, "unknown_item", f"item {item_id!r} is not in the index; nothing removed")
        return {"item_id": item_id, "removed": removed, "count": int(engine.index.ntotal)}


def _json_object(text: Optional[str]) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(422, "invalid_request", f"fields: not valid JSON ({exc.msg})", [{"field": "fields", "problem": "not valid JSON"}]) from None
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_request", "fields: must be a JSON object", [{"field": "fields", "problem": "must be a JSON object"}])
    return value
