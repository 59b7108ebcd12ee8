"""One error hierarchy for the whole platform; a single handler renders it as RFC 9457.

Services raise these, never ``HTTPException``. ``commit`` says whether the unit of work
keeps its writes although the request fails: a failed login or a detected refresh-token
reuse must leave its security event (and the revocation) behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PROBLEM_BASE = "https://docs.pantherahive.dev/problems/"


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class AppError(Exception):
    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal Server Error"
    commit: bool = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = list(errors)
        self.headers = headers or {}
        self.extra = extra or {}

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.slug


class BadRequest(AppError):
    status, slug, title = 400, "bad-request", "Bad Request"


class Unauthenticated(AppError):
    status, slug, title = 401, "unauthenticated", "Unauthorized"

    def __init__(self, detail: str | None = None, **kwargs: object) -> None:
        super().__init__(detail, **kwargs)  # type: ignore[arg-type]
        self.headers.setdefault("WWW-Authenticate", 'Bearer realm="pantherahive"')


class Forbidden(AppError):
    status, slug, title = 403, "forbidden", "Forbidden"
    commit = True  # the authz.denied event survives the failed request


class NotFound(AppError):
    status, slug, title = 404, "not-found", "Not Found"


class Conflict(AppError):
    status, slug, title = 409, "conflict", "Conflict"


class PreconditionFailed(AppError):
    status, slug, title = 412, "precondition-failed", "Precondition Failed"


class PayloadTooLarge(AppError):
    status, slug, title = 413, "payload-too-large", "Payload Too Large"


class UnsupportedMediaType(AppError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported Media Type"


class ValidationFailed(AppError):
    status, slug, title = 422, "validation-error", "Unprocessable Content"


class RateLimited(AppError):
    status, slug, title = 429, "rate-limited", "Too Many Requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class ServiceUnavailable(AppError):
    status, slug, title = 503, "service-unavailable", "Service Unavailable"

    def __init__(self, detail: str | None = None, retry_after: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})
