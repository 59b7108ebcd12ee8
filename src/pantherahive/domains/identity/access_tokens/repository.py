"""All SQL of personal access tokens."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.identity.access_tokens.tables import AccessToken
from pantherahive.infra.db import direct
from pantherahive.infra.db.repository import TenantRepository

# Every request made with a token: one round trip, see migration 0016.
_AUTHENTICATE = (
    "SELECT id, user_id, scopes, expires_at, revoked_at, role, status"
    " FROM identity.authenticate_token($1, $2, $3, $4)"
)


async def authenticate(
    session: AsyncSession, tenant_id: UUID, token_hash: bytes, *, now: datetime,
    touch_before: datetime,
) -> direct.Record | None:
    """Enter the tenant and read the token with its user's live role and status; its
    ``last_used_at`` becomes ``now`` when it is older than ``touch_before``."""
    return await direct.fetchrow(
        session, _AUTHENTICATE, tenant_id, token_hash, now, touch_before
    )


class AccessTokenRepository(TenantRepository):
    async def add(self, token: AccessToken) -> None:
        self.session.add(token)
        await self.session.flush()

    async def live(self, token_id: UUID, *, user_id: UUID | None = None) -> AccessToken | None:
        """The token, unless revoked; only the user's own when ``user_id`` is given."""
        stmt = self.select(AccessToken).where(
            AccessToken.id == token_id, AccessToken.revoked_at.is_(None)
        )
        if user_id is not None:
            stmt = stmt.where(AccessToken.user_id == user_id)
        found: AccessToken | None = (
            await self.session.execute(stmt.with_for_update())
        ).scalar_one_or_none()
        return found

    async def list_live(
        self, *, user_id: UUID | None, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[AccessToken]:
        """Unrevoked tokens, oldest first; of one user when ``user_id`` is given."""
        stmt = self.select(AccessToken).where(AccessToken.revoked_at.is_(None))
        if user_id is not None:
            stmt = stmt.where(AccessToken.user_id == user_id)
        if after is not None:
            stmt = stmt.where(
                tuple_(AccessToken.created_at, AccessToken.id) > tuple_(after[0], after[1])
            )
        stmt = stmt.order_by(AccessToken.created_at, AccessToken.id).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def revoke_all(self, user_id: UUID, now: datetime) -> None:
        await self.session.execute(
            self.update(AccessToken)
            .where(AccessToken.user_id == user_id, AccessToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
