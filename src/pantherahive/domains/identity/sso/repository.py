"""All of single sign-on's SQL: the tenant's settings, its sign-in states and its
``require_2fa`` flag (a column of ``identity.tenants``, shared with two-factor sign-in)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pantherahive.domains.identity.sso.tables import OidcLoginState, SsoLink, TenantSso
from pantherahive.infra.db.repository import TenantRepository

_REQUIRE_2FA = "SELECT require_2fa FROM identity.tenants WHERE id = $1"
_SET_REQUIRE_2FA = (
    "UPDATE identity.tenants SET require_2fa = $2, updated_at = now() WHERE id = $1"
)
_PURGE_STATES = "DELETE FROM identity.oidc_login_states WHERE tenant_id = $1 AND expires_at < $2"


class SsoRepository(TenantRepository):
    async def settings(self, *, for_update: bool = False) -> TenantSso | None:
        stmt = self.select(TenantSso)
        if for_update:
            stmt = stmt.with_for_update()
        found: TenantSso | None = (await self.session.execute(stmt)).scalar_one_or_none()
        return found

    async def add(self, row: TenantSso | OidcLoginState | SsoLink) -> None:
        self.session.add(row)
        await self.session.flush()

    async def require_2fa(self) -> bool:
        return bool(await self.fetchval(_REQUIRE_2FA))

    async def set_require_2fa(self, value: bool) -> None:
        await self.execute(_SET_REQUIRE_2FA, value)

    async def login_state(self, state_hash: bytes) -> OidcLoginState | None:
        """The sign-in with this state, locked: two callbacks racing with one state cannot
        both find it unused."""
        stmt = (
            self.select(OidcLoginState)
            .where(OidcLoginState.state_hash == state_hash)
            .with_for_update()
        )
        found: OidcLoginState | None = (await self.session.execute(stmt)).scalar_one_or_none()
        return found

    async def purge_login_states(self, expired_before: datetime) -> None:
        await self.execute(_PURGE_STATES, expired_before)

    async def linked_user(self, issuer: str, subject: str) -> UUID | None:
        stmt = self.select(SsoLink, SsoLink.user_id).where(
            SsoLink.issuer == issuer, SsoLink.subject == subject
        )
        found: UUID | None = (await self.session.execute(stmt)).scalar_one_or_none()
        return found

    async def user_is_linked(self, user_id: UUID, issuer: str) -> bool:
        """Whether the user is already some subject of this issuer."""
        stmt = self.select(SsoLink, SsoLink.user_id).where(
            SsoLink.user_id == user_id, SsoLink.issuer == issuer
        )
        return (await self.session.execute(stmt.limit(1))).first() is not None
