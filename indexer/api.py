"""``indexer serve``: the search engine over HTTP (FastAPI on uvicorn).

    indexer serve IDX [--host 127.0.0.1] [--port 8000] [--max-upload-mb 20] [--backend faiss|milvus] [--milvus-uri URI]
                      [--api-key-file FILE] [--keys-for-reads] [--read-only]
                      [--allowed-hosts NAME ...] [--cors-origins URL ...] [--reject-unfamiliar]

    POST   /search            multipart: image, k, offset, min_score, clothes_type, category, attributes,
                              exclude_unfamiliar; each result says whether it is a close match
    POST   /search/batch      the same with several images; each answered in order   (indexer.api_search)
    GET    /items/{item_id}   the item's gallery images and the shop's data
    POST   /items             multipart: images, item_id, the shop's data, reject_unfamiliar  (a write; indexer.api_items)
    PATCH  /items/{item_id}   JSON: change the shop's data of the item            (a write)
    DELETE /items/{item_id}   remove every image of the item                      (a write)
    GET    /images/{id}       the gallery image file of one result
    GET    /health, /info     liveness and count; index, model and filter choices
    GET    /version           package, index format and model versions
    GET    /docs, /redoc      the OpenAPI pages, their scripts served by this server (no CDN)

Every answer is JSON described in ``/openapi.json`` (:mod:`indexer.api_models`); every error is
``{"error": {"code": ..., "message": ...}}`` with its status code (:mod:`indexer.api_errors`), and a
field an endpoint does not take is refused. Who may read and write is :mod:`indexer.access`; the
upload limit is :mod:`indexer.body_limit`. Answers name files by paths relative to the catalogue's
image root or to the index, never by the server's own paths.

Endpoints are plain ``def`` functions, so FastAPI runs them in its thread pool: searches read
``engine.index`` (swapped whole on reload), and adds and removes go through the engine, which takes
the index's cross-process writer lock and reloads the index afterwards.

FastAPI, uvicorn, torch and the model are imported inside the functions that need them, so the
``indexer`` command can register ``serve`` and still answer ``--help`` at once.
"""

import argparse
import functools
import inspect
import logging
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from fashionnet.cli.options import device_option, runtime_option  # argparse only
from indexer.access import API_KEY_ENV, DOCS_ASSETS  # torch-free
from indexer.backend_names import BACKENDS, CHECK_BACKEND_HELP, MILVUS_URI_HELP  # torch-free

if TYPE_CHECKING:  # the model's modules load torch; `indexer --help` imports this module without them
    from indexer.access import AccessPolicy
    from indexer.search import SearchEngine

log = logging.getLogger("indexer.api")

DEFAULT_MAX_UPLOAD_MB = 20
API_VERSION = "2"  # the HTTP interface: 2 added pages, batches, catalogue data and the refusal of unknown fields
REFRESH_EVERY_S = 2.0  # how often requests look for a newer saved index (another process's add or remove)


# ----------------------------------------------------------------------------- the application

def create_app(engine: "SearchEngine", max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024,
               policy: Optional["AccessPolicy"] = None, reject_unfamiliar: bool = False):
    """The FastAPI application answering for ``engine``, under ``policy`` (default: a server on the
    loopback with no keys, see :mod:`indexer.access`); ``reject_unfamiliar`` refuses, in every add,
    photos that do not look like garment photos (:mod:`indexer.unfamiliar`)."""
    from fastapi import Depends
    from fastapi.responses import FileResponse
    from fastapi_offline import FastAPIOffline

    from indexer import layout
    from indexer.access import AccessGuard, AccessPolicy
    from indexer.api_errors import ApiError, install_error_handlers, refuse_unknown_fields
    from indexer.api_items import add_item_routes
    from indexer.api_json import plain, public_index_info
    from indexer.api_models import Health, Info, Version, document_real_errors, error_responses
    from indexer.api_search import add_search_routes
    from indexer.body_limit import BodyLimit
    from indexer.path_hiding import hide_server_paths
    from indexer.uploads import UploadStore

    # /docs and /redoc load Swagger UI and ReDoc from files this server serves, not from a CDN
    app = FastAPIOffline(title="FashionNet clothes search", version=_version(), static_url=DOCS_ASSETS,
                         description="Search a gallery of shop photos with a photo of clothes; add and remove shop items "
                                     "with the shop's own data. Every error is {\"error\": {\"code\", \"message\"}}.",
                         dependencies=[Depends(refuse_unknown_fields)])
    policy = policy or AccessPolicy()
    # the last added runs first: CORS answers preflights, the guard refuses before a body is read
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    app.add_middleware(AccessGuard, policy=policy)
    if policy.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(policy.cors_origins), allow_methods=["GET", "POST", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])
    roots = {str(engine.index_dir or ""): "<index>", str((engine.index.extra or {}).get("image_root") or ""): "<images>",
             str(getattr(engine.images, "override", None) or ""): "<images>"}
    hide_paths = functools.partial(hide_server_paths, roots=roots)
    install_error_handlers(app, hide_paths)
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

    @app.get("/health", response_model=Health, responses=error_responses(422, 503), summary="Liveness and the number of gallery images")
    def health():
        return {"status": "ok", "count": int(fresh_engine().index.ntotal)}

    @app.get("/info", response_model=Info, responses=error_responses(401, 403, 422, 503),
             summary="The index, the model and the values each filter can take")
    def info():
        e = fresh_engine()
        p = e.predictor
        return plain({"index": public_index_info(e.index.info()), "description": e.describe(),
                      "model": {"checksum": p.model_checksum, "backbone": p.config.backbone, "input_side": p.input_side,
                                "embedding_dim": p.embedding_dim, "categories": len(p.category_names)},
                      "filters": e.filter_choices(), "known_values": e.known_values(), "max_upload_bytes": max_upload_bytes,
                      "access": {"read_only": policy.read_only, "keys_for_reads": policy.keys_for_reads,
                                 "writes": not policy.read_only and (bool(policy.keys) or policy.writes_open_without_key)}})

    @app.get("/version", response_model=Version, responses=error_responses(401, 403, 422, 503),
             summary="The package, HTTP API and index format versions, and the model's checksum and name")
    def version():
        e = fresh_engine()
        served = layout.read_manifest(e.index_dir).get("format_version") if e.index_dir is not None else None
        checkpoint = (e.index.extra or {}).get("checkpoint_in_index") or (e.index.extra or {}).get("checkpoint")
        return {"package_version": _version(), "api": API_VERSION,
                "index": {"format_version": served, "newest_format_readable": max(layout.FORMAT_VERSION, layout.MILVUS_FORMAT_VERSION)},
                "model": {"checksum": e.predictor.model_checksum, "backbone": e.predictor.config.backbone,
                          "checkpoint_name": Path(checkpoint).name if checkpoint else None}}

    add_search_routes(app, fresh_engine)
    add_item_routes(app, engine, fresh_engine, uploads, writes, reject_unfamiliar)
    document_real_errors(app)

    @app.get("/images/{image_id}", summary="The file of one gallery image", response_class=FileResponse,
             responses={200: {"description": "the image file", "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}},
                        **error_responses(401, 403, 404, 422)})
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
    s.add_argument("--backend", choices=BACKENDS, default=None, help=CHECK_BACKEND_HELP)
    s.add_argument("--milvus-uri", metavar="URI", help=MILVUS_URI_HELP + "; default: the one the index recorded")
    device_option(s, "for embedding and search: auto (default: the GPU when present), cpu or cuda")
    runtime_option(s)
    s.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help="largest request body accepted, in MiB")
    s.add_argument("--reject-unfamiliar", action="store_true",
                   help="refuse added photos that do not look like garment photos, naming each (default: add them, flagged)")
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
    if getattr(args, "backend", None) or getattr(args, "milvus_uri", None):
        kwargs.update(backend=args.backend, milvus_uri=args.milvus_uri)
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
    app = create_app(engine, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), policy=policy,
                     reject_unfamiliar=args.reject_unfamiliar)
    if not is_loopback(args.host):
        print(f"indexer serve: warning: listening on {args.host}, reachable from other machines: "
              + ("searches need a key" if policy.keys_for_reads else "anyone who reaches the port can search this catalogue")
              + ("" if policy.keys or policy.read_only else "; writes are refused until you pass --api-key-file")
              + ("" if args.allowed_hosts else "; pass --allowed-hosts with the names clients use"), file=sys.stderr, flush=True)
    print(f"serving {engine.describe()} on http://{args.host}:{args.port} (docs at /docs); {policy.describe()}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, workers=1)
    return 0
