"""Routes of personal access tokens: a user's own (``/v1/users/me/tokens``, session tokens
only: a leaked token must not mint more) and the tenant's (``/v1/tokens``, ADMIN)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from pantherahive.core.pagination import DEFAULT_LIMIT
from pantherahive.core.schemas import Page
from pantherahive.domains.identity.access_tokens import service
from pantherahive.domains.identity.access_tokens.schemas import (
    AccessTokenCreate,
    AccessTokenCreated,
    AccessTokenRead,
)
from pantherahive.infra.http.listing import Cursor, Limit
from pantherahive.infra.http.paths import uuid_path
from pantherahive.infra.http.problems import problem_responses as _problems
from pantherahive.infra.http.unit_of_work import RequestSession
from pantherahive.infra.security.dependency import CurrentAuth
from pantherahive.infra.security.scopes import Scope, scoped, session_only

TokenId = Annotated[UUID, uuid_path("tokenId", "The personal access token.")]


mine = APIRouter(prefix="/v1/users/me/tokens", tags=["tokens"], dependencies=[session_only()])
tenant = APIRouter(prefix="/v1/tokens", tags=["tokens"], dependencies=[scoped(Scope.ADMIN)])


@mine.get("", responses=_problems(401, 403, 422))
async def list_my_tokens(
    auth: CurrentAuth, session: RequestSession, cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[AccessTokenRead]:
    """The caller's personal access tokens that are not revoked, oldest first (expired ones
    included). The tokens themselves are never shown again."""
    rows, next_cursor = await service.list_tokens(
        session, auth, mine=True, cursor=cursor, limit=limit
    )
    return Page[AccessTokenRead].of(rows, next_cursor)


@mine.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=_problems(401, 403, 422),
)
async def create_my_token(
    body: AccessTokenCreate, auth: CurrentAuth, session: RequestSession, response: Response
) -> AccessTokenCreated:
    """Make a personal access token for scripts and integrations: `token` (`ph_pat_…`)
    appears in this answer only; send it as `Authorization: Bearer <token>`. It may do
    what its `scopes` name and the caller's role allows, until `expiresAt` or until
    revoked. `admin` and `audit:read` need the ADMIN role (403). Personal access tokens
    cannot call this route."""
    token, secret = await service.create_token(session, auth, body=body)
    response.headers["Cache-Control"] = "no-store"  # the answer carries the token
    return AccessTokenCreated.model_validate(
        {**AccessTokenRead.model_validate(token).model_dump(), "token": secret}
    )


@mine.delete(
    "/{tokenId:uuid}", status_code=status.HTTP_204_NO_CONTENT,
    responses=_problems(401, 403, 404),
)
async def revoke_my_token(token_id: TokenId, auth: CurrentAuth, session: RequestSession) -> None:
    """Revoke one of the caller's tokens; it stops working at once. Another user's or an
    already revoked token is 404."""
    await service.revoke_token(session, auth, token_id, mine=True)


@tenant.get("", responses=_problems(401, 403, 422))
async def list_tenant_tokens(
    auth: CurrentAuth,
    session: RequestSession,
    user_id: Annotated[UUID | None, Query(alias="userId")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[AccessTokenRead]:
    """Every unrevoked personal access token of the tenant, oldest first (ADMIN only);
    `userId` narrows to one user's."""
    rows, next_cursor = await service.list_tokens(
        session, auth, mine=False, user_id=user_id, cursor=cursor, limit=limit
    )
    return Page[AccessTokenRead].of(rows, next_cursor)


@tenant.delete(
    "/{tokenId:uuid}", status_code=status.HTTP_204_NO_CONTENT,
    responses=_problems(401, 403, 404),
)
async def revoke_tenant_token(
    token_id: TokenId, auth: CurrentAuth, session: RequestSession
) -> None:
    """Revoke any personal access token of the tenant (ADMIN only); it stops working at
    once."""
    await service.revoke_token(session, auth, token_id, mine=False)
