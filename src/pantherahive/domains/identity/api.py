"""Identity's public face: the only module other services may import.

``require_auth`` is the one producer of :class:`AuthContext`; every authenticated route of
every service depends on it.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.errors import Unauthenticated
from pantherahive.domains.identity.tables import User
from pantherahive.infra.db import direct
from pantherahive.infra.http.unit_of_work import request_session
from pantherahive.infra.ratelimit import remember
from pantherahive.infra.security.principal import AuthContext, Role

__all__ = [
    "AuthContext",
    "CurrentAuth",
    "Role",
    "active_admin_ids",
    "active_user_emails",
    "active_user_ids",
    "require_auth",
    "token_versions",
]

# Asked whenever a task gets an assignee: fixed SQL, see infra/db/direct.py.
_ACTIVE_AMONG = "SELECT id FROM identity.users WHERE id = ANY($1::uuid[]) AND status = 'ACTIVE'"

_bearer = HTTPBearer(auto_error=False, description="Access token from POST /v1/auth/login")


async def require_auth(
    request: Request,
    session: Annotated[AsyncSession, Depends(request_session)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AuthContext:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("Send an access token: Authorization: Bearer <token>.")
    platform = request.app.state.platform
    auth: AuthContext = await platform.authenticator.principal(session, credentials.credentials)
    limits = platform.rate_limits
    remember(request.scope, await limits.hit(platform.user_rate_item, "user", str(auth.user_id)))
    return auth


CurrentAuth = Annotated[AuthContext, Depends(require_auth)]


async def active_user_ids(session: AsyncSession, user_ids: set[UUID]) -> set[UUID]:
    """Which of these users are ACTIVE users of the transaction's tenant."""
    if not user_ids:
        return set()
    rows = await direct.fetch(session, _ACTIVE_AMONG, list(user_ids))
    return {row["id"] for row in rows}


async def active_user_emails(session: AsyncSession, user_ids: set[UUID]) -> dict[UUID, str | None]:
    """The email (or None) of each of these users who is ACTIVE in the transaction's tenant."""
    if not user_ids:
        return {}
    stmt = select(User.id, User.email).where(User.id.in_(user_ids), User.status == "ACTIVE")
    return {row.id: row.email for row in await session.execute(stmt)}


async def token_versions(session: AsyncSession, user_ids: set[UUID]) -> dict[UUID, int]:
    """The token version of each of these users who is ACTIVE in the transaction's tenant:
    an access token of a user missing here, or carrying another version, no longer works
    (deactivation, a role or password change bump it)."""
    if not user_ids:
        return {}
    stmt = select(User.id, User.token_version).where(User.id.in_(user_ids),
                                                     User.status == "ACTIVE")
    return {row.id: row.token_version for row in await session.execute(stmt)}


async def active_admin_ids(session: AsyncSession) -> set[UUID]:
    """The ACTIVE ADMINs of the transaction's tenant."""
    stmt = select(User.id).where(User.role == Role.ADMIN.value, User.status == "ACTIVE")
    return set((await session.execute(stmt)).scalars())
