"""RFC 9457 problem+json rendering and the exception handlers that use it."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Send

from pantherahive.core.errors import PROBLEM_BASE, AppError
from pantherahive.infra.http.state import mark_commit_on_error

PROBLEM_CONTENT_TYPE = "application/problem+json"

_HTTP_SLUGS = {
    400: ("bad-request", "Bad Request"),
    401: ("unauthenticated", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not Found"),
    405: ("method-not-allowed", "Method Not Allowed"),
    406: ("not-acceptable", "Not Acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload Too Large"),
    415: ("unsupported-media-type", "Unsupported Media Type"),
    422: ("validation-error", "Unprocessable Content"),
    429: ("rate-limited", "Too Many Requests"),
    500: ("internal-error", "Internal Server Error"),
    503: ("service-unavailable", "Service Unavailable"),
}


def problem_body(
    status: int,
    *,
    detail: str,
    instance: str | None,
    slug: str | None = None,
    title: str | None = None,
    errors: list[dict[str, str]] | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    default_slug, default_title = _HTTP_SLUGS.get(status, ("error", "Error"))
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or default_slug),
        "title": title or default_title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return orjson.dumps(body)


def problem_response(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers)


async def send_problem(
    send: Send, status: int, detail: str, instance: str, headers: dict[str, str] | None = None
) -> None:
    """Answer with a problem document from raw ASGI middleware, outside FastAPI."""
    raw = problem_body(status, detail=detail, instance=instance)
    out = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(raw)).encode()),
    ]
    for name, value in (headers or {}).items():
        out.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": raw})


async def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    if exc.commit:
        mark_commit_on_error(request.scope)
    body = problem_body(
        exc.status,
        detail=exc.detail,
        instance=request.url.path,
        slug=exc.slug,
        title=exc.title,
        errors=[{"field": e.field, "message": e.message} for e in exc.errors] or None,
        extra=exc.extra,
    )
    return problem_response(exc.status, body, exc.headers)


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:] or parts
    return ".".join(parts) or "body"


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    if any(_location(err) == "path" for err in problems):
        # A malformed id in a path names no resource at all: 404, as the contract says —
        # whatever else is wrong with the request.
        return problem_response(
            404, problem_body(404, detail="No such resource.", instance=request.url.path)
        )
    errors = [_field_error(err) for err in problems]
    body = problem_body(
        422, detail="The request is not valid.", instance=request.url.path, errors=errors
    )
    return problem_response(422, body)


def _location(err: Any) -> str:
    loc = err.get("loc") or ("",)
    return str(loc[0])


def _field_error(err: Any) -> dict[str, str]:
    if err.get("type") == "json_invalid":
        # loc is ("body", <character offset>): the offset is no field of anything.
        reason = str((err.get("ctx") or {}).get("error", "")).strip()
        position = err.get("loc", ())[-1] if len(err.get("loc", ())) > 1 else None
        message = "The body is not valid JSON"
        if reason:
            message += f": {reason}"
        if isinstance(position, int):
            message += f" (at character {position})"
        return {"field": "body", "message": message + "."}
    return {"field": _field_path(err.get("loc", ())), "message": str(err.get("msg", "invalid"))}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, AppError):
        # FastAPI wraps errors raised while reading the body (e.g. the size limit) in a 400.
        return await _app_error(request, exc.__cause__)
    detail = (
        exc.detail
        if isinstance(exc.detail, str)
        else _HTTP_SLUGS.get(exc.status_code, ("", "Error"))[1]
    )
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No such resource."
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the methods of the first route whose path matched; the
        # contract's Allow lists every method of the path, across all its routes.
        headers["Allow"] = _allowed_methods(request)
    body = problem_body(exc.status_code, detail=detail, instance=request.url.path)
    return problem_response(exc.status_code, body, headers)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> str:
    """Every method some route fully matches for this path (asked of the router itself, so
    included routers, prefixes and path convertors count as they do when routing)."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in routes
        )
    ]
    return ", ".join(allowed)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": ["string", "null"]},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
_PROBLEM_CONTENT = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for routes: these codes answer with problem+json."""
    return {
        code: {
            "description": _HTTP_SLUGS.get(code, ("", "Problem"))[1],
            "content": _PROBLEM_CONTENT,
        }
        for code in codes
    }


IDEMPOTENCY_KEY_HEADER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes a retry safe. A repeat with the same key and the same body within 24 hours "
        "returns the first answer (same status and body, header `Idempotent-Replayed: true`) "
        "and changes nothing; the same key with another body is 422. Keys belong to the "
        "caller: the user of the access token, or the client address without one."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
_REPLAYED_HEADER: dict[str, Any] = {
    "description": "`true` when this is the stored answer to an earlier request with the same "
    "Idempotency-Key.",
    "schema": {"type": "string", "enum": ["true"]},
}
_BODY_METHODS = {"post", "put", "patch"}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Make the generated OpenAPI tell the truth: every error is problem+json, and what the
    gateway and the unit of work do for every route is documented on every route."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            codes = ["422", "429", "500", "503"]  # 503: a dependency is down
            if method in _BODY_METHODS:
                codes += ["413", "415"]  # the body-size limit and JSON-only bodies
            if "requestBody" in operation:
                # a body that cannot be parsed (not JSON, not UTF-8); 422 is for a parsed
                # body that breaks the schema
                responses.setdefault(
                    "400", {"description": "Bad Request: the body is not valid JSON (UTF-8)"}
                )
            for code in codes:
                responses.setdefault(code, {"description": _HTTP_SLUGS[int(code)][1]})
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400:
                    response["content"] = _PROBLEM_CONTENT
            if method == "post":
                _document_idempotency(operation)
    schema["components"]["schemas"].pop("HTTPValidationError", None)
    schema["components"]["schemas"].pop("ValidationError", None)
    return schema


def _document_idempotency(operation: dict[str, Any]) -> None:
    parameters = operation.setdefault("parameters", [])
    if not any(p.get("name", "").lower() == "idempotency-key" for p in parameters):
        parameters.append(IDEMPOTENCY_KEY_HEADER)
    responses = operation["responses"]
    for code, response in responses.items():
        if code.isdigit() and int(code) < 500 and int(code) not in (401, 429):
            response.setdefault("headers", {})["Idempotent-Replayed"] = _REPLAYED_HEADER
    responses.setdefault(
        "409",
        {
            "description": "Conflict (also: a request with this Idempotency-Key is still "
            "running; retry after `Retry-After`)"
        },
    )
    responses["409"]["content"] = _PROBLEM_CONTENT
