"""The gateway duties, as one pure ASGI middleware (cheaper than a stack of them):
request ids, request context, body-size limit, JSON content type, security headers,
metrics by route template, one access log line, and a problem+json 500 that never leaks
(or a 503 with ``Retry-After`` when what failed is a dependency being down).
"""

from __future__ import annotations

import re
import time
import traceback
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pantherahive.core.errors import PayloadTooLarge
from pantherahive.infra.context import begin_context
from pantherahive.infra.http.problems import send_problem
from pantherahive.infra.logging import get_logger
from pantherahive.infra.metrics import HTTP_LATENCY, HTTP_REQUESTS
from pantherahive.infra.ratelimit import remembered_headers
from pantherahive.infra.unavailable import RETRY_AFTER_SECONDS, dependency_unavailable

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
]
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_DOCS_PATHS = ("/docs", "/redoc")
log = get_logger("pantherahive.http")


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers", []))
        supplied = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        client = scope.get("client")
        begin_context(request_id, client[0] if client else None)
        method: str = scope["method"]
        path: str = scope["path"]
        status_holder = [500]
        response_started = False

        async def send_wrapped(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                status_holder[0] = message["status"]
                out = list(message.get("headers", []))
                out.append((b"x-request-id", request_id.encode()))
                # A 429 carries the headers of the limit that refused it; anything else,
                # error or not, those of the route's limiter, if it ran.
                if not any(name.lower() == b"ratelimit-limit" for name, _ in out):
                    out.extend(remembered_headers(scope))
                out.extend(_SECURITY_HEADERS)
                if not path.startswith(_DOCS_PATHS):
                    out.append(_API_CSP)
                message = {**message, "headers": out}
            await send(message)

        failure: Exception | None = None
        unavailable = False
        try:
            early = self._refuse_early(method, headers, scope.get("query_string", b""))
            if early is not None:
                status, detail = early
                await send_problem(send_wrapped, status, detail, path)
            else:
                await self.app(scope, self._limited(receive), send_wrapped)
        except PayloadTooLarge as exc:
            status_holder[0] = 413
            if not response_started:
                await send_problem(send_wrapped, 413, exc.detail, path)
        except Exception as exc:
            failure = exc
            unavailable = dependency_unavailable(exc)
            status_holder[0] = 503 if unavailable else 500
            # (If a streamed response broke off, the client sees the cut; we log it below.)
            if not response_started and unavailable:
                await send_problem(
                    send_wrapped,
                    503,
                    "A service this request needs is unavailable; retry shortly.",
                    path,
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            elif not response_started:
                await send_problem(
                    send_wrapped, 500, "An unexpected error occurred; it has been logged.", path
                )
        finally:
            route = scope.get("route")
            # the template as clients read it ("/v1/tasks/{taskId}"), without the ":uuid"
            # path convertor that the route itself carries
            template = (
                getattr(route, "path_format", None) or getattr(route, "path", None) or "<unmatched>"
            )
            elapsed = time.perf_counter() - started
            status = status_holder[0]
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_LATENCY.labels(method, template).observe(elapsed)
            if status >= 500 or failure is not None:
                # Exactly one line per failed request, carrying the request id (bound in
                # the context) and, for a bug, the traceback; an outage needs no traceback.
                details: dict[str, str] = {}
                if failure is not None:
                    details["error"] = type(failure).__name__
                    if not unavailable:
                        details["traceback"] = "".join(traceback.format_exception(failure))
                log.error(
                    "request_failed",
                    method=method,
                    path=path,
                    route=template,
                    status=status,
                    ms=round(elapsed * 1000, 2),
                    **details,
                )
            else:
                log.info(
                    "request",
                    method=method,
                    route=template,
                    status=status,
                    ms=round(elapsed * 1000, 2),
                )

    def _refuse_early(
        self, method: str, headers: dict[bytes, bytes], query: bytes
    ) -> tuple[int, str] | None:
        if b"%00" in query:
            return 422, "Query parameters must not contain NUL characters."
        if method not in _BODY_METHODS:
            return None
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return 413, f"The request body exceeds {self.max_body_bytes} bytes."
        has_body = (length is not None and length not in {b"0", b""}) or (
            b"transfer-encoding" in headers
        )
        content_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if has_body and not (
            content_type == b"application/json" or content_type.endswith(b"+json")
        ):
            return 415, "Send the request body as application/json."
        return None

    def _limited(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.max_body_bytes

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
            return message

        return wrapped
