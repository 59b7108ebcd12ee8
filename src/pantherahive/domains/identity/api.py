"""Identity's public face: the only module other services may import.

Routes authenticate through ``pantherahive.infra.security.dependency.CurrentAuth`` (the
composition root wires identity's authenticator behind it), not through this module.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.identity.tables import User
from pantherahive.infra.db import direct
from pantherahive.infra.security.principal import AuthContext, Role

__all__ = [
    "AuthContext",
    "Role",
    "active_admin_ids",
    "active_user_emails",
    "active_user_ids",
    "token_versions",
]

# Asked whenever a task gets an assignee: fixed SQL, see infra/db/direct.py.
_ACTIVE_AMONG = "SELECT id FROM identity.users WHERE id = ANY($1::uuid[]) AND status = 'ACTIVE'"


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
