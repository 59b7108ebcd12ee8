"""Wire shapes of personal access tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import AwareDatetime, Field, StringConstraints

from pantherahive.core.schemas import ApiModel, RequestModel
from pantherahive.infra.security.scopes import Scope


class AccessTokenCreate(RequestModel):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    scopes: list[Scope] = Field(
        min_length=1,
        max_length=len(Scope),
        description="What the token may do; `admin` is everything the user's role allows. "
        "`admin` and `audit:read` need the ADMIN role (403 otherwise).",
    )
    expires_at: AwareDatetime | None = Field(
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
