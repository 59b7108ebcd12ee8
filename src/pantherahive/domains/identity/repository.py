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

from sqlalchemy import Select, func, or_, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.identity.schemas import UserRead
from pantherahive.domains.identity.tables import ActionToken, RefreshToken, Tenant, User
from pantherahive.infra.db import direct
from pantherahive.infra.db.repository import TenantRepository

# Hot paths (every request, every user read) run as fixed SQL: see infra/db/direct.py.
_AUTHENTICATE = "SELECT role, status, token_version FROM identity.authenticate($1, $2)"
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

    async def principal(self, tenant_id: UUID, user_id: UUID) -> tuple[str, str, int] | None:
        """Enter the tenant and read the caller's live role/status/version: one round trip."""
        row = await direct.fetchrow(self.session, _AUTHENTICATE, tenant_id, user_id)
        return (row["role"], row["status"], row["token_version"]) if row else None


class IdentityRepository(TenantRepository):
    async def add(self, row: User | RefreshToken | ActionToken) -> None:
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
        await self.session.execute(
            self.update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def revoke_user_sessions(self, user_id: UUID, now: datetime) -> None:
        await self.session.execute(
            self.update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )

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


def _prefix_pattern(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
