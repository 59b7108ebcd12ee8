"""Login sessions: a user's devices, listed and ended.

A session is one login's refresh-token family; its id is the ``sid`` claim of the access
tokens issued for it. Ending a session revokes its refresh tokens and, through the
principal check (which reads the session in the same statement), its access tokens on
their next request. ``lastUsedAt`` moves when the session logs in or refreshes: access
tokens live at most 15 minutes, so an active session never looks older than that.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.clock import now
from pantherahive.core.errors import NotFound
from pantherahive.core.pagination import cut_time_id_page, decode_time_id_cursor
from pantherahive.domains.identity import events
from pantherahive.domains.identity.permissions import UserAction, user_may
from pantherahive.domains.identity.repository import IdentityRepository, SessionRepository
from pantherahive.domains.identity.schemas import SessionRead
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.security.authz import deny
from pantherahive.infra.security.principal import AuthContext


async def list_my_sessions(
    session: AsyncSession, auth: AuthContext, *, cursor: str | None, limit: int
) -> tuple[list[SessionRead], str | None]:
    """The caller's live sessions, oldest first; ``current`` marks the caller's own."""
    rows = await SessionRepository(session, auth.tenant_id).live(
        auth.user_id, now(), after=decode_time_id_cursor(cursor), limit=limit + 1
    )
    page, next_cursor = cut_time_id_page(rows, limit, lambda row: (row.created_at, row.id))
    return [
        SessionRead(
            id=row.id, user_agent=row.user_agent, ip=row.ip, created_at=row.created_at,
            last_used_at=row.last_used_at, current=row.id == auth.session_id,
        )
        for row in page
    ], next_cursor


async def revoke_my_session(session: AsyncSession, auth: AuthContext, session_id: UUID) -> None:
    """End one of the caller's sessions (their own current one included: a logout). Not
    the caller's, or not live: 404."""
    at = now()
    found = await SessionRepository(session, auth.tenant_id).get_live(
        auth.user_id, session_id, at
    )
    if found is None:
        raise NotFound("No such session.")
    await IdentityRepository(session, auth.tenant_id).revoke_family(session_id, at)
    await emit(session, events.SessionRevoked(session_id=session_id), subject_id=auth.user_id)


async def revoke_my_sessions(session: AsyncSession, auth: AuthContext, *, others: bool) -> None:
    """End every session of the caller; with ``others``, all but the caller's own."""
    keep = auth.session_id if others else None
    count = await IdentityRepository(session, auth.tenant_id).revoke_user_sessions(
        auth.user_id, now(), keep=keep
    )
    await emit(
        session,
        events.SessionsRevoked(scope="others" if others else "all", count=count),
        subject_id=auth.user_id,
    )


async def revoke_user_sessions(session: AsyncSession, auth: AuthContext, user_id: UUID) -> None:
    """An ADMIN ends every session of a user of the tenant: refresh and access tokens
    alike, and (the token version moves) the notification streams they opened."""
    repo = IdentityRepository(session, auth.tenant_id)
    if await repo.get_user(user_id) is None:
        raise NotFound("No such user.")
    if not user_may(auth, UserAction.REVOKE_SESSIONS, target_is_self=user_id == auth.user_id):
        raise await deny(
            session, auth, UserAction.REVOKE_SESSIONS.value, subject_type="user",
            subject_id=user_id,
        )
    user = await repo.get_user(user_id, for_update=True)
    if user is None:
        raise NotFound("No such user.")
    count = await repo.revoke_user_sessions(user_id, now())
    user.token_version += 1
    await session.flush()
    await emit(session, events.SessionsRevoked(scope="all", count=count), subject_id=user_id)
