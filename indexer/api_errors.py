"""Errors of the HTTP API: one shape, ``{"error": {"code", "message", "details"?}}``, for every
failure, and the refusal of request fields an endpoint does not take (a misspelt ``min_scor`` or a
field of a newer API version must not be ignored without a word)."""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

from starlette.requests import Request

log = logging.getLogger("indexer.api")


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


_declared: dict[int, tuple[set[str], set[str]]] = {}


def declared_fields(route) -> tuple[set[str], set[str]]:
    """(query parameter names, body field names) an APIRoute takes, its dependencies' included."""
    if id(route) not in _declared:
        _declared[id(route)] = _fields_of(route)
    return _declared[id(route)]


def _fields_of(route) -> tuple[set[str], set[str]]:
    query: set[str] = set()
    body: set[str] = set()
    pending = [route.dependant]
    while pending:  # the endpoint's parameters and its dependencies' (e.g. the search options)
        dependant = pending.pop()
        pending.extend(dependant.dependencies)
        query |= {p.alias for p in dependant.query_params}
        for model_field in dependant.body_params:
            body.add(model_field.alias)
            annotation = getattr(model_field.field_info, "annotation", None)
            if hasattr(annotation, "model_fields"):  # a JSON body model: its own field names
                body |= {info.alias or name for name, info in annotation.model_fields.items()}
    return query, body


async def refuse_unknown_fields(request: Request) -> None:
    """A dependency of every endpoint: 422 naming each query parameter, form field or JSON key the
    endpoint does not take."""
    route = request.scope.get("route")
    if route is None or not hasattr(route, "dependant") or not getattr(route, "include_in_schema", True):
        return  # the docs pages take what Swagger UI sends them
    query, body = declared_fields(route)
    unknown = [("query", name) for name in request.query_params.keys() if name not in query]
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()  # parsed once: FastAPI reuses it
        unknown += [("body", name) for name in dict.fromkeys(form.keys()) if name not in body]
    elif content_type.startswith("application/json"):
        try:
            payload = json.loads(await request.body() or b"null")
        except (ValueError, UnicodeDecodeError):
            payload = None  # FastAPI answers malformed JSON itself
        if isinstance(payload, dict):
            unknown += [("body", name) for name in payload if name not in body]
    if unknown:
        problems = [{"field": name, "problem": f"unknown {'query parameter' if where == 'query' else 'field'}; "
                                              f"this endpoint takes {', '.join(sorted(query if where == 'query' else body)) or 'none'}"}
                    for where, name in unknown]
        raise ApiError(422, "unknown_field", "; ".join(f"{p['field']}: {p['problem']}" for p in problems), problems)


def install_error_handlers(app, hide_paths: Callable[[str], str]) -> None:
    """Every failure of ``app`` answered in the one error shape, server paths hidden."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from fashionnet.data.images import ImageLoadError
    from indexer.errors import IndexStoreError
    from indexer.filter_values import UnknownFilterValue

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

    @app.exception_handler(UnknownFilterValue)
    def _unknown_value(request: Request, exc: UnknownFilterValue):
        return JSONResponse(error_body("unknown_filter_value", str(exc), {"field": exc.field, "value": exc.value, "allowed": exc.allowed}),
                            status_code=422)

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
