"""All of identity's SQL.

Users and their tokens are tenant rows: :class:`IdentityRepository` is a
``TenantRepository``, so every statement names the tenant. :class:`TenantDirectory` stands
outside that base: the tenants table itself, and the lookups that find the tenant (slug,
token claims), run before a tenant is in scope.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, func, or_, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.identity.schemas import UserRead
from pantherahive.domains.identity.tables import (
    ActionToken,
    MfaChallenge,
    RecoveryCode,
    RefreshToken,
    Tenant,
    TotpCredential,
    User,
    UserSession,
)
from pantherahive.infra.db import direct
from pantherahive.infra.db.repository import TenantRepository

# Hot paths (every request, every user read) run as fixed SQL: see infra/db/direct.py.
_AUTHENTICATE = (
    "SELECT role, status, token_version FROM identity.authenticate_session($1, $2, $3)"
)
# A user as UserRead shows it: the response model is the one list of the public columns.
_READ_USER = (
    f"SELECT {', '.join(UserRead.model_fields)} FROM identity.users"
    " WHERE tenant_id = $1 AND id = $2"
)


class TenantDirectory:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def tenant_id_for_slug(self, slug: str) -> UUID | None:
        result = await self.session.execute(
            text("SELECT identity.tenant_id_for_slug(:slug)"), {"slug": slug}
        )
        value: UUID | None = result.scalar()
        return value

    async def add_tenant(self, tenant: Tenant) -> None:
        self.session.add(tenant)
        await self.session.flush()

    async def get_tenant(self, tenant_id: UUID) -> Tenant | None:
        return await self.session.get(Tenant, tenant_id)

    async def principal(
        self, tenant_id: UUID, user_id: UUID, session_id: UUID | None
    ) -> tuple[str, str, int] | None:
        """Enter the tenant and read the caller's live role/status/version, provided the
        token's login session is not revoked: one round trip. No session, no principal."""
        if session_id is None:
            return None
        row = await direct.fetchrow(
            self.session, _AUTHENTICATE, tenant_id, user_id, session_id
        )
        return (row["role"], row["status"], row["token_version"]) if row else None


class IdentityRepository(TenantRepository):
    async def add(
        self,
        row: User | RefreshToken | ActionToken | UserSession | TotpCredential | RecoveryCode
        | MfaChallenge,
    ) -> None:
        self.session.add(row)
        await self.session.flush()

    # users
    async def read_user(self, user_id: UUID) -> direct.Record | None:
        """The user's public fields, for reading only."""
        return await self.fetchrow(_READ_USER, user_id)

    async def get_user(self, user_id: UUID, *, for_update: bool = False) -> User | None:
        stmt = self.select(User).where(User.id == user_id)
        if for_update:
            stmt = stmt.with_for_update()
        found: User | None = (await self.session.execute(stmt)).scalar_one_or_none()
        return found

    async def find_user_by_login(self, login: str) -> User | None:
        lowered = login.lower()
        stmt = (
            self.select(User)
            .where(or_(func.lower(User.username) == lowered, func.lower(User.email) == lowered))
            .order_by(User.created_at)
            .limit(1)
        )
        found: User | None = (await self.session.execute(stmt)).scalar_one_or_none()
        return found

    async def find_user_by_email(self, email: str) -> User | None:
        stmt = self.select(User).where(func.lower(User.email) == email.lower())
        found: User | None = (await self.session.execute(stmt)).scalar_one_or_none()
        return found

    async def username_or_email_taken(
        self, username: str | None, email: str | None, *, exclude: UUID | None = None
    ) -> str | None:
        """Which of the two is already used in this tenant ('username'/'email'), if any."""
        checks = []
        if username:
            checks.append(("username", func.lower(User.username) == username.lower()))
        if email:
            checks.append(("email", func.lower(User.email) == email.lower()))
        for field, condition in checks:
            stmt = self.select(User, User.id).where(condition)
            if exclude is not None:
                stmt = stmt.where(User.id != exclude)
            if (await self.session.execute(stmt.limit(1))).first() is not None:
                return field
        return None

    async def lock_active_admins(self) -> list[UUID]:
        """Lock the tenant's active ADMIN rows, so two demotions cannot both pass the check."""
        stmt = (
            self.select(User, User.id)
            .where(User.role == "ADMIN", User.status == "ACTIVE")
            .order_by(User.id)
            .with_for_update()
        )
        return list((await self.session.execute(stmt)).scalars())

    def list_users_query(
        self,
        *,
        role: str | None,
        status: str | None,
        q: str | None,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> Select[Any]:
        stmt = self.select(User)
        if role:
            stmt = stmt.where(User.role == role)
        if status:
            stmt = stmt.where(User.status == status)
        if q:
            pattern = _prefix_pattern(q)
            stmt = stmt.where(
                or_(
                    User.username.ilike(pattern, escape="\\"),
                    User.email.ilike(pattern, escape="\\"),
                    User.first_name.ilike(pattern, escape="\\"),
                    User.last_name.ilike(pattern, escape="\\"),
                )
            )
        if after is not None:
            stmt = stmt.where(tuple_(User.created_at, User.id) > tuple_(after[0], after[1]))
        return stmt.order_by(User.created_at, User.id).limit(limit)

    async def list_users(self, **kwargs: Any) -> list[User]:
        return list((await self.session.execute(self.list_users_query(**kwargs))).scalars())

    # refresh tokens
    async def refresh_token_by_hash(self, token_hash: bytes) -> RefreshToken | None:
        stmt = (
            self.select(RefreshToken)
            .where(RefreshToken.token_hash == token_hash)
            .with_for_update()
        )
        found: RefreshToken | None = (await self.session.execute(stmt)).scalar_one_or_none()
        return found

    async def revoke_family(self, family_id: UUID, now: datetime) -> None:
        """End one login session: its refresh tokens, and (the session row) its access
        tokens."""
        await self.session.execute(
            self.update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        await self.session.execute(
            self.update(UserSession)
            .where(UserSession.id == family_id, UserSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def revoke_user_sessions(
        self, user_id: UUID, now: datetime, *, keep: UUID | None = None
    ) -> int:
        """End every login session of the user but ``keep``'s; how many live ones ended."""
        tokens = self.update(RefreshToken).where(
            RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)
        )
        sessions = self.update(UserSession).where(
            UserSession.user_id == user_id, UserSession.revoked_at.is_(None)
        )
        if keep is not None:
            tokens = tokens.where(RefreshToken.family_id != keep)
            sessions = sessions.where(UserSession.id != keep)
        await self.session.execute(tokens.values(revoked_at=now))
        ended = await self.session.execute(
            sessions.values(revoked_at=now).returning(UserSession.expires_at)
        )
        return sum(1 for expires_at in ended.scalars() if expires_at > now)

    # single-use action tokens
    async def action_token_by_hash(self, token_hash: bytes, purpose: str) -> ActionToken | None:
        stmt = (
            self.select(ActionToken)
            .where(ActionToken.token_hash == token_hash, ActionToken.purpose == purpose)
            .with_for_update()
        )
        found: ActionToken | None = (await self.session.execute(stmt)).scalar_one_or_none()
        return found

    async def expire_action_tokens(self, user_id: UUID, purpose: str, now: datetime) -> None:
        await self.session.execute(
            self.update(ActionToken)
            .where(
                ActionToken.user_id == user_id,
                ActionToken.purpose == purpose,
                ActionToken.used_at.is_(None),
            )
            .values(used_at=now)
        )


class SessionRepository(TenantRepository):
    """Login sessions (one per refresh-token family)."""

    async def touch(
        self,
        session_id: UUID,
        *,
        now: datetime,
        expires_at: datetime,
        ip: str | None,
        user_agent: str | None,
    ) -> None:
        """A refresh used the session: it was last used now, from this device (where the
        request shows it)."""
        await self.session.execute(
            self.update(UserSession)
            .where(UserSession.id == session_id)
            .values(
                last_used_at=now,
                expires_at=expires_at,
                ip=func.coalesce(ip, UserSession.ip),
                user_agent=func.coalesce(user_agent, UserSession.user_agent),
            )
        )

    async def live(
        self, user_id: UUID, now: datetime, *, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[UserSession]:
        stmt = self.select(UserSession).where(
            UserSession.user_id == user_id,
            UserSession.revoked_at.is_(None),
            UserSession.expires_at > now,
        )
        if after is not None:
            stmt = stmt.where(
                tuple_(UserSession.created_at, UserSession.id) > tuple_(after[0], after[1])
            )
        stmt = stmt.order_by(UserSession.created_at, UserSession.id).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def get_live(self, user_id: UUID, session_id: UUID, now: datetime) -> UserSession | None:
        stmt = self.select(UserSession).where(
            UserSession.id == session_id,
            UserSession.user_id == user_id,
            UserSession.revoked_at.is_(None),
            UserSession.expires_at > now,
        )
        found: UserSession | None = (await self.session.execute(stmt)).scalar_one_or_none()
        return found


class MfaRepository(TenantRepository):
    """TOTP credentials, recovery codes, login challenges and the tenant's 2FA switch."""

    async def tenant_requires_2fa(self) -> bool:
        stmt = select(Tenant.require_2fa).where(Tenant.id == self.tenant_id)
        return bool((await self.session.execute(stmt)).scalar())

    async def set_tenant_requires_2fa(self, required: bool) -> bool:
        """Set the switch; whether it changed."""
        result = await self.session.execute(
            update(Tenant)
            .where(Tenant.id == self.tenant_id, Tenant.require_2fa.is_not(required))
            .values(require_2fa=required, updated_at=func.now())
            .returning(Tenant.id)
        )
        return result.first() is not None

    async def totp(self, user_id: UUID, *, for_update: bool = False) -> TotpCredential | None:
        stmt = self.select(TotpCredential).where(TotpCredential.user_id == user_id)
        if for_update:
            stmt = stmt.with_for_update()
        found: TotpCredential | None = (await self.session.execute(stmt)).scalar_one_or_none()
        return found

    async def has_confirmed_totp(self, user_id: UUID) -> bool:
        stmt = self.select(TotpCredential, TotpCredential.user_id).where(
            TotpCredential.user_id == user_id, TotpCredential.confirmed_at.is_not(None)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def remove_recovery_codes(self, user_id: UUID) -> None:
        await self.session.execute(
            self.delete(RecoveryCode).where(RecoveryCode.user_id == user_id)
        )

    async def remove_second_factor(self, user_id: UUID) -> None:
        """The TOTP credential and every recovery code of the user."""
        await self.remove_recovery_codes(user_id)
        await self.session.execute(
            self.delete(TotpCredential).where(TotpCredential.user_id == user_id)
        )

    async def spend_recovery_code(self, user_id: UUID, code_hash: bytes, now: datetime) -> bool:
        """Mark the code used if it is the user's and unused: single use under concurrency
        (the row's update decides, not a read before it)."""
        result = await self.session.execute(
            self.update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.code_hash == code_hash,
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=now)
            .returning(RecoveryCode.id)
        )
        return result.first() is not None

    async def unused_recovery_codes(self, user_id: UUID) -> int:
        stmt = self.select(RecoveryCode, func.count()).where(
            RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def challenge_by_hash(self, token_hash: bytes) -> MfaChallenge | None:
        stmt = (
            self.select(MfaChallenge)
            .where(MfaChallenge.token_hash == token_hash)
            .with_for_update()
        )
        found: MfaChallenge | None = (await self.session.execute(stmt)).scalar_one_or_none()
        return found


def _prefix_pattern(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
