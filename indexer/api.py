"""``indexer serve``: the search engine over HTTP (FastAPI on uvicorn).

    indexer serve IDX [--host 127.0.0.1] [--port 8000] [--max-upload-mb 20]
                      [--api-key-file FILE] [--keys-for-reads] [--read-only]
                      [--allowed-hosts NAME ...] [--cors-origins URL ...]

    POST   /search            multipart: image, k, clothes_type, category, attributes
    GET    /items/{item_id}   the item's gallery images
    POST   /items             multipart: images (one or more files), item_id      (a write)
    DELETE /items/{item_id}   remove every image of the item                      (a write)
    GET    /images/{id}       the gallery image file of one result
    GET    /health, /info     liveness and count; index, model and filter choices
    GET    /docs              the generated OpenAPI page

Every answer is JSON; every error is ``{"error": {"code": ..., "message": ...}}`` with its status
code. Who may read and write is :mod:`indexer.access`; the upload limit is :mod:`indexer.body_limit`.
Answers name files by paths relative to the catalogue's image root or to the index, never by the
server's own paths.

Endpoints are plain ``def`` functions, so FastAPI runs them in its thread pool: searches read
``engine.index`` (swapped whole on reload), and adds and removes go through the engine, which takes
the index's cross-process writer lock and reloads the index afterwards.

FastAPI, uvicorn, torch and the model are imported inside the functions that need them, so the
``indexer`` command can register ``serve`` and still answer ``--help`` at once.
"""

import argparse
import inspect
import logging
import math
import re
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from fashionnet.cli_options import device_option, runtime_option  # argparse only
from indexer.access import API_KEY_ENV  # torch-free

if TYPE_CHECKING:  # the model's modules load torch; `indexer --help` imports this module without them
    from indexer.access import AccessPolicy
    from indexer.search import SearchEngine

log = logging.getLogger("indexer.api")

DEFAULT_MAX_UPLOAD_MB = 20
MAX_K = 1000
REFRESH_EVERY_S = 2.0  # how often requests look for a newer saved index (another process's add or remove)
ITEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ApiError(Exception):
    """An error answer: HTTP status, a short machine-readable code, and a sentence for people."""

    def __init__(self, status: int, code: str, message: str, details: Any = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_body(code: str, message: str, details: Any = None) -> dict:
    error = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


# ----------------------------------------------------------------------------- JSON helpers

def plain(value: Any) -> Any:
    """A JSON-safe copy: numpy scalars to Python numbers, NaN / NA to None."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()  # numpy scalar
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, int):
        return value
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def prediction_json(prediction) -> dict:
    """``Prediction.as_dict()`` as plain JSON types: each landmark with its heatmap confidence and
    low_confidence flag, the garment box, whether the photo was cropped to it and whether that box
    was cut below the wearer's face (below_face)."""
    return plain(prediction.as_dict())


def gallery_rows_json(rows) -> list[dict]:
    """Result or item rows as the API shows them; category and clothes type as the filters read them
    (the annotation where there is one, else the model's prediction)."""
    from indexer.search import gallery_column

    if len(rows) == 0:
        return []
    categories = gallery_column(rows, "category").tolist()
    types = gallery_column(rows, "clothes_type").tolist()
    ids = rows["id"].tolist() if "id" in rows else rows.index.tolist()
    out = []
    for i, (_, row) in enumerate(rows.iterrows()):
        image_id = int(ids[i])
        entry = {"id": image_id, "item_id": plain(row.get("item_id")), "category": plain(categories[i]),
                 "clothes_type": None if plain(types[i]) is None else int(plain(types[i])),
                 "image_url": f"/images/{image_id}", "image_path": public_image_path(row)}
        if "rank" in row:
            entry = {"rank": int(row["rank"]), **entry, "score": float(row["score"])}
        out.append(entry)
    return out


def public_image_path(row) -> Optional[str]:
    """Where a gallery image is, as a client may see it: relative to the catalogue's image root, or
    to the index for photos added through the API (``uploads/...``); never the server's own path."""
    from indexer.portable import INSIDE_INDEX

    relpath = plain(row.get("image_relpath"))
    if isinstance(relpath, str) and relpath:
        return relpath[len(INSIDE_INDEX):] if relpath.startswith(INSIDE_INDEX) else relpath
    path = plain(row.get("image_path"))
    return Path(path).name if path else None


PUBLIC_EXTRA = ("input_side", "image_size", "flip_average", "shard", "skipped_count", "checkpoint_in_index")


def public_index_info(info: dict) -> dict:
    """``EmbeddingIndex.info()`` without the server's paths (the index's own path, the checkpoint's,
    the image and data roots, the build command and the skipped files)."""
    public = {key: value for key, value in info.items() if key not in ("path", "extra")}
    extra = info.get("extra") or {}
    public["extra"] = {key: extra[key] for key in PUBLIC_EXTRA if key in extra}
    return public


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\"`/]+/)+([^\s'\"`/]*)")


def path_hider(roots: dict[str, str]):
    """A function that rewrites a message for clients: each of ``roots`` (absolute path -> what to
    call it) by its name, then any other absolute path by its last part."""
    ordered = sorted(((str(path), name) for path, name in roots.items() if path), key=lambda pair: -len(pair[0]))

    def hide(message: str) -> str:
        for path, name in ordered:
            message = message.replace(path, name)
        return _ABSOLUTE_PATH.sub(lambda m: f"<server path>/{m.group(1)}", message)

    return hide


def split_attributes(values) -> tuple[str, ...]:
    """Repeated and comma-separated attribute fields as one tuple of names."""
    names = []
    for value in values or ():
        names.extend(part.strip() for part in str(value).split(","))
    return tuple(name for name in names if name)


# ----------------------------------------------------------------------------- the application

def create_app(engine: "SearchEngine", max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024,
               policy: Optional["AccessPolicy"] = None):
    """The FastAPI application answering for ``engine``, under ``policy`` (default: a server on the
    loopback with no keys, see :mod:`indexer.access`)."""
    from typing import Annotated

    from fastapi import FastAPI, File, Form, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from fashionnet.images import ImageLoadError, load_image
    from indexer.access import AccessGuard, AccessPolicy
    from indexer.body_limit import BodyLimit
    from indexer.errors import IndexStoreError
    from indexer.uploads import UploadStore, real

    app = FastAPI(title="FashionNet clothes search", version=_version(),
                  description="Search a gallery of shop photos with a photo of clothes; add and remove shop items.")
    policy = policy or AccessPolicy()
    # the last added runs first: CORS answers preflights, the guard refuses before a body is read
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    app.add_middleware(AccessGuard, policy=policy)
    if policy.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(policy.cors_origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])
    hide_paths = path_hider({str(engine.index_dir or ""): "<index>", str((engine.index.extra or {}).get("image_root") or ""): "<images>",
                             str(getattr(engine.images, "override", None) or ""): "<images>"})
    writes = threading.Lock()  # one add or remove at a time within this server (processes queue on the index's lock)
    uploads = UploadStore(engine.index_dir) if engine.index_dir is not None else None
    last_refresh = [time.monotonic()]

    def fresh_engine() -> "SearchEngine":
        """The engine, reloaded first if another process saved a newer index (checked every few seconds)."""
        now = time.monotonic()
        if now - last_refresh[0] >= REFRESH_EVERY_S:
            last_refresh[0] = now
            engine.refresh()
        return engine

    @app.exception_handler(ApiError)
    def _api_error(request: Request, exc: ApiError):
        return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse(error_body(codes.get(exc.status_code, f"http_{exc.status_code}"), message),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    def _invalid_request(request: Request, exc: RequestValidationError):
        problems = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")),
                     "problem": e.get("msg", "")} for e in exc.errors()]
        message = "; ".join(f"{p['field']}: {p['problem']}" if p["field"] else p["problem"] for p in problems)
        return JSONResponse(error_body("invalid_request", message or "invalid request", problems), status_code=422)

    @app.exception_handler(ImageLoadError)
    def _bad_image(request: Request, exc: ImageLoadError):
        return JSONResponse(error_body("invalid_image", str(exc), {"file": exc.source, "problem": exc.problem}), status_code=422)

    @app.exception_handler(ValueError)  # the engine's word for a request it cannot answer, e.g. nprobe on a flat index
    def _refused(request: Request, exc: ValueError):
        return JSONResponse(error_body("invalid_request", hide_paths(str(exc))), status_code=422)

    @app.exception_handler(IndexStoreError)
    def _index_trouble(request: Request, exc: IndexStoreError):
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(error_body("index_unavailable", hide_paths(str(exc))), status_code=503)

    @app.exception_handler(Exception)
    def _unexpected(request: Request, exc: Exception):
        # not log.exception: this handler runs outside the except block, where it would log "NoneType: None"
        log.error("%s %s failed", request.method, request.url.path, exc_info=(type(exc), exc, exc.__traceback__))
        return JSONResponse(error_body("internal_error", f"the server could not answer: {type(exc).__name__}"), status_code=500)

    @app.get("/health", summary="Liveness and the number of gallery images")
    def health():
        return {"status": "ok", "count": int(fresh_engine().index.ntotal)}

    @app.get("/info", summary="The index, the model and the values each filter can take")
    def info():
        e = fresh_engine()
        p = e.predictor
        return plain({"index": public_index_info(e.index.info()), "description": e.describe(),
                      "model": {"checksum": p.model_checksum, "backbone": p.config.backbone, "input_side": p.input_side,
                                "embedding_dim": p.embedding_dim, "categories": len(p.category_names)},
                      "filters": e.filter_choices(), "max_upload_bytes": max_upload_bytes,
                      "access": {"read_only": policy.read_only, "keys_for_reads": policy.keys_for_reads,
                                 "writes": not policy.read_only and (bool(policy.keys) or policy.writes_open_without_key)}})

    @app.post("/search", summary="Top-k gallery items (each at its best image) for a photo, optionally filtered")
    def search(image: Annotated[UploadFile, File(description="the query photo")],
               k: Annotated[int, Form(ge=1, le=MAX_K, description="results to return")] = 20,
               clothes_type: Annotated[Optional[int], Form(ge=1, le=3, description="1 upper, 2 lower, 3 full body")] = None,
               category: Annotated[Optional[str], Form(description="only this category")] = None,
               attributes: Annotated[list[str], Form(description="every one required; repeat the field or separate by commas")] = [],
               nprobe: Annotated[Optional[int], Form(ge=1, description="IVF lists visited (IVF indexes only)")] = None,
               per_item: Annotated[bool, Form(description="k distinct items, each at its best image; false: the k nearest images")] = True):
        name = image.filename or "<upload>"
        photo = load_image(image.file.read(), source=name)
        result = fresh_engine().query(photo, k=k, clothes_type=clothes_type, nprobe=nprobe,
                                      category=category or None, attributes=split_attributes(attributes), per_item=per_item)
        return {"query": {"file": name, "k": k, "per_item": per_item, "filters": {"clothes_type": clothes_type, "category": category or None,
                                                              "attributes": list(split_attributes(attributes))}},
                "prediction": prediction_json(result.prediction),
                "results": gallery_rows_json(result.matches)}

    @app.get("/items/{item_id}", summary="Every gallery image of one item")
    def item(item_id: str):
        rows = fresh_engine().item_images(item_id)
        if len(rows) == 0:
            raise ApiError(404, "unknown_item", f"item {item_id!r} is not in the index")
        return {"item_id": item_id, "count": len(rows), "images": gallery_rows_json(rows)}

    @app.post("/items", summary="Add one or more photos of an item (new or existing)")
    def add_item(images: Annotated[list[UploadFile], File(description="one or more photos")],
                 item_id: Annotated[Optional[str], Form(description="the item's id (default: a new one)")] = None):
        if uploads is None:
            raise ApiError(409, "read_only", "this index was loaded from memory and cannot be changed")
        item_id = item_id.strip() if item_id else f"item-{secrets.token_hex(6)}"
        if not ITEM_ID.match(item_id):
            raise ApiError(422, "invalid_item_id", "item_id must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
        files = [(f.filename or f"upload-{i + 1}", f.file.read()) for i, f in enumerate(images)]
        with writes, uploads.lock():  # held until the add commits: a tidy-up never sees an upload in flight
            folder = uploads.new_upload()
            added_paths: set[str] = set()
            try:
                saved, refused = uploads.save(folder, item_id, files)
                duplicates, report = [], None
                if saved:
                    report = engine.add_images([folder])
                    for path, problem in report.skipped:
                        refused.append({"file": saved.get(real(path), path), "problem": problem})
                    duplicates = [{"file": saved.get(real(path), path), "problem": problem} for path, problem in report.duplicates]
                    not_added = {real(p) for p, _ in report.skipped} | {real(p) for p, _ in report.duplicates}
                    added_paths = set(saved) - not_added
            finally:
                uploads.discard(folder, keep=added_paths)
        count = int(report.count if report is not None else engine.index.ntotal)
        if not added_paths:
            status, code = (422, "invalid_image") if refused else (409, "duplicate")
            what = "; ".join(f"{r['file']}: {r['problem']}" for r in refused + duplicates)
            raise ApiError(status, code, f"nothing was added; the index is unchanged ({count} images). {what}",
                           {"skipped": refused, "duplicates": duplicates, "count": count})
        rows = engine.item_images(item_id)
        rows = rows[[real(p) in added_paths for p in rows["image_path"].astype(str)]]
        return {"item_id": item_id, "added": len(added_paths), "count": count, "images": gallery_rows_json(rows),
                "skipped": refused, "duplicates": duplicates}

    @app.delete("/items/{item_id}", summary="Remove every image of an item")
    def delete_item(item_id: str):
        if engine.index_dir is None:
            raise ApiError(409, "read_only", "this index was loaded from memory and cannot be changed")
        with writes:
            removed = engine.remove_items([item_id])  # deletes the item's uploaded files too
        if removed == 0:
            raise ApiError(404, "unknown_item", f"item {item_id!r} is not in the index; nothing removed")
        return {"item_id": item_id, "removed": removed, "count": int(engine.index.ntotal)}

    @app.get("/images/{image_id}", summary="The file of one gallery image", response_class=FileResponse)
    def gallery_image(image_id: int):
        try:
            path = fresh_engine().image_file(image_id)
        except KeyError:
            raise ApiError(404, "unknown_image", f"no gallery image has id {image_id}") from None
        if not Path(path).is_file():
            log.warning("gallery image %s is not on disk at %s", image_id, path)
            raise ApiError(404, "image_missing", f"gallery image {image_id} is not on disk on the server")
        return FileResponse(path)

    return app




def _version() -> str:
    import fashionnet

    return fashionnet.__version__


# ----------------------------------------------------------------------------- the command

def add_serve_parser(subparsers) -> argparse.ArgumentParser:
    s = subparsers.add_parser("serve", help="answer searches, adds and removes over HTTP (JSON API, docs at /docs)")
    s.add_argument("index", help="index folder to serve (adds and removes update it in place)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    s.add_argument("--checkpoint", help="default: the checkpoint the index was built with")
    s.add_argument("--image-root", help="folder the gallery images are under now, if they moved since the build")
    device_option(s, "for embedding and search: auto (default: the GPU when present), cpu or cuda")
    runtime_option(s)
    s.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help="largest request body accepted, in MiB")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="server log detail (default info)")
    who = s.add_argument_group("access (see indexer/access.py)")
    who.add_argument("--api-key-file", help="keys that may write (and read): one per line, 'KEY', 'write KEY' or 'read KEY'; "
                                            f"or one write key in ${API_KEY_ENV}. Without a key, writes are accepted only on the loopback")
    who.add_argument("--keys-for-reads", action="store_true", help="searches and item pages need a key too (/health and /docs stay open)")
    who.add_argument("--read-only", action="store_true", help="answer searches only; every add and remove is refused")
    who.add_argument("--allowed-hosts", nargs="+", metavar="NAME",
                     help="Host names clients may use to reach this server, checked on every request ('*': any); "
                          "default: the loopback names, the --host address and this machine's names (on 0.0.0.0 "
                          "without this option, checked on writes only)")
    who.add_argument("--cors-origins", nargs="+", metavar="URL", default=[],
                     help="web sites (e.g. https://shop.example) whose pages may call this API from a browser, writes included")
    return s


def open_engine(args) -> "SearchEngine":
    """SearchEngine.open with the options this version of it takes."""
    from indexer.search import SearchEngine

    kwargs = {"checkpoint": args.checkpoint, "device": args.device, "runtime": getattr(args, "runtime", "auto")}
    if getattr(args, "image_root", None):
        if "image_root" not in inspect.signature(SearchEngine.open).parameters:
            raise ValueError("--image-root needs a SearchEngine that can look for images elsewhere; this one cannot")
        kwargs["image_root"] = args.image_root
    return SearchEngine.open(args.index, **kwargs)


def cmd_serve(args) -> int:
    if not 1 <= args.port <= 65535 and args.port != 0:
        raise ValueError(f"--port must be between 1 and 65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise ValueError(f"--max-upload-mb must be above 0, got {args.max_upload_mb}")
    from indexer.access import AccessPolicy, is_loopback

    policy = AccessPolicy.from_options(args.host, key_file=args.api_key_file, read_only=args.read_only, keys_for_reads=args.keys_for_reads,
                                       allowed_hosts=args.allowed_hosts, cors_origins=args.cors_origins)
    import uvicorn

    engine = open_engine(args)
    app = create_app(engine, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), policy=policy)
    if not is_loopback(args.host):
        print(f"indexer serve: warning: listening on {args.host}, reachable from other machines: "
              + ("searches need a key" if policy.keys_for_reads else "anyone who reaches the port can search this catalogue")
              + ("" if policy.keys or policy.read_only else "; writes are refused until you pass --api-key-file")
              + ("" if args.allowed_hosts else "; pass --allowed-hosts with the names clients use"), file=sys.stderr, flush=True)
    print(f"serving {engine.describe()} on http://{args.host}:{args.port} (docs at /docs); {policy.describe()}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, workers=1)
    return 0
