"""Wire shapes of personal access tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, BeforeValidator, Field

from pantherahive.core.schemas import ApiModel, RequestModel, Rfc3339DateTime, stripped_text
from pantherahive.infra.security.scopes import Scope


def _in_utc(value: datetime) -> datetime:
    """A moment without an offset is read as UTC; one whose UTC form falls outside the
    calendar (year 1 at +05:00) is refused rather than overflowing later."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("is out of range") from exc


def _text_or_moment(value: object) -> object:
    """JSON gives text; a number is not read as seconds since 1970."""
    if not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 date-time such as 2030-01-15T12:00:00Z")
    return value


UtcDateTime = Annotated[
    Rfc3339DateTime, BeforeValidator(_text_or_moment), AfterValidator(_in_utc)
]


class AccessTokenCreate(RequestModel):
    name: Annotated[str, stripped_text(100)]
    scopes: list[Scope] = Field(
        min_length=1,
        max_length=len(Scope),
        description="What the token may do; `admin` is everything the user's role allows. "
        "`admin` and `audit:read` need the ADMIN role (403 otherwise).",
    )
    expires_at: UtcDateTime | None = Field(
        default=None, description="When the token stops working (in the future); null: never."
    )


class AccessTokenRead(ApiModel):
    id: UUID
    user_id: UUID
    name: str
    scopes: list[Scope]
    prefix: str = Field(description="The token's first characters, to tell tokens apart.")
    expires_at: datetime | None
    last_used_at: datetime | None = Field(
        description="When the token last authenticated a request (to the minute)."
    )
    created_at: datetime


class AccessTokenCreated(AccessTokenRead):
    token: str = Field(
        description="The token itself (`ph_pat_…`): shown in this answer only, never again."
    )
