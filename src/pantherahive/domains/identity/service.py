"""Identity's rules: tenants and users. Services never commit; the edge does.

Security-relevant outcomes (denials, role and status changes) are written to the outbox in
the same transaction as the change, so the audit trail cannot miss them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.clock import now
from pantherahive.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from pantherahive.core.naming import camel
from pantherahive.core.pagination import cut_time_id_page, decode_time_id_cursor
from pantherahive.core.schemas import never_null, refuse_nulls
from pantherahive.domains.identity import events
from pantherahive.domains.identity.access_tokens.repository import AccessTokenRepository
from pantherahive.domains.identity.delivery import AccountMessageSender
from pantherahive.domains.identity.errors import (
    DuplicateUser,
    LastAdmin,
    SignupClosed,
    WrongCurrentPassword,
)
from pantherahive.domains.identity.permissions import UserAction, user_may
from pantherahive.domains.identity.repository import (
    IdentityRepository,
    SessionRepository,
    TenantDirectory,
)
from pantherahive.domains.identity.schemas import (
    PasswordChange,
    TenantCreate,
    UserCreate,
    UserRead,
    UserStatus,
    UserUpdate,
)
from pantherahive.domains.identity.tables import (
    ActionToken,
    RefreshToken,
    Tenant,
    User,
    UserSession,
)
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.context import bind_principal
from pantherahive.infra.db.direct import Record
from pantherahive.infra.db.engine import set_tenant
from pantherahive.infra.security.authz import deny
from pantherahive.infra.security.passwords import Passwords
from pantherahive.infra.security.principal import AuthContext, Role
from pantherahive.infra.security.tokens import AccessTokens, new_opaque_token

# What a PATCH may not set to null: the fields the user's document never shows null.
_NOT_NULL = never_null(UserUpdate, UserRead)
REFRESH_PREFIX = "phr"
VERIFY_PREFIX = "phv"
RESET_PREFIX = "php"


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: UUID


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """The device a login session is started or refreshed from, as the request shows it."""

    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    signup_open: bool
    require_email_verification: bool
    refresh_ttl: timedelta
    email_token_ttl: timedelta
    reset_token_ttl: timedelta


class IdentityService:
    def __init__(
        self,
        *,
        passwords: Passwords,
        tokens: AccessTokens,
        sender: AccountMessageSender,
        config: IdentityConfig,
    ) -> None:
        self.passwords = passwords
        self.tokens = tokens
        self.sender = sender
        self.config = config

    # ---- tokens -------------------------------------------------------------------------
    async def issue_session(
        self,
        session: AsyncSession,
        user: User,
        family_id: UUID | None = None,
        *,
        client: ClientInfo | None = None,
    ) -> IssuedTokens:
        """A new access token and a new refresh token: a new login session (family) on
        ``client``'s device unless ``family_id`` names the one a refresh continues."""
        client = client or ClientInfo()
        at = now()
        expires_at = at + self.config.refresh_ttl
        if family_id is None:
            family_id = uuid4()
            await IdentityRepository(session, user.tenant_id).add(
                UserSession(
                    id=family_id, tenant_id=user.tenant_id, user_id=user.id,
                    user_agent=client.user_agent, ip=client.ip, created_at=at,
                    last_used_at=at, expires_at=expires_at, revoked_at=None,
                )
            )
        else:
            await SessionRepository(session, user.tenant_id).touch(
                family_id, now=at, expires_at=expires_at, ip=client.ip,
                user_agent=client.user_agent,
            )
        refresh = await self._store_token(
            session, user, RefreshToken, REFRESH_PREFIX, self.config.refresh_ttl,
            family_id=family_id,
        )
        access = self.tokens.issue(
            user_id=user.id, tenant_id=user.tenant_id, token_version=user.token_version,
            session_id=family_id,
        )
        return IssuedTokens(access, refresh, self.tokens.ttl_seconds, family_id)

    async def issue_action_token(
        self, session: AsyncSession, user: User, purpose: str, ttl: timedelta, prefix: str
    ) -> str:
        return await self._store_token(session, user, ActionToken, prefix, ttl, purpose=purpose)

    async def _store_token(
        self,
        session: AsyncSession,
        user: User,
        table: type[RefreshToken | ActionToken],
        prefix: str,
        ttl: timedelta,
        **columns: Any,
    ) -> str:
        """A new opaque token of ``user``'s, kept as its hash in a row of ``table`` that
        expires after ``ttl`` (``columns``: the table's own)."""
        token, token_hash = new_opaque_token(prefix, user.tenant_id)
        await IdentityRepository(session, user.tenant_id).add(
            table(
                id=uuid4(),
                tenant_id=user.tenant_id,
                user_id=user.id,
                token_hash=token_hash,
                expires_at=now() + ttl,
                **columns,
            )
        )
        return token

    # ---- tenants ------------------------------------------------------------------------
    async def sign_up(
        self, session: AsyncSession, *, body: TenantCreate, client: ClientInfo | None = None
    ) -> tuple[Tenant, User, IssuedTokens | None]:
        """Self-service tenant creation (``POST /v1/tenants``), which the platform may close.

        Closing sign-up closes only this door: an operator still makes tenants with
        ``pantherahive create-tenant``, which calls :meth:`create_tenant` directly.
        """
        if not self.config.signup_open:
            raise SignupClosed()
        return await self.create_tenant(session, body=body, client=client)

    async def create_tenant(
        self, session: AsyncSession, *, body: TenantCreate, client: ClientInfo | None = None
    ) -> tuple[Tenant, User, IssuedTokens | None]:
        """The tenant, its first ADMIN, and that ADMIN's session — None while the ADMIN
        has an email address to verify first (tokens that could not be used)."""
        if body.admin.role is not Role.ADMIN:
            raise ValidationFailed(
                "A tenant's first user must be an ADMIN.",
                errors=[_field("admin.role", "must be ADMIN")],
            )
        self._require_email(body.admin.email, "admin.email")
        directory = TenantDirectory(session)
        if await directory.tenant_id_for_slug(body.slug) is not None:
            raise Conflict(f"The slug {body.slug!r} is taken.", errors=[_field("slug", "taken")])
        tenant_id = uuid4()
        await set_tenant(session, tenant_id)
        tenant = Tenant(id=tenant_id, name=body.name, slug=body.slug)
        try:
            await directory.add_tenant(tenant)
        except IntegrityError as exc:
            raise Conflict(
                f"The slug {body.slug!r} is taken.", errors=[_field("slug", "taken")]
            ) from exc
        admin_id = uuid4()
        bind_principal(tenant_id, admin_id)
        # The sign-up's audited event; the first ADMIN's user.created accompanies it.
        await emit(
            session,
            events.TenantCreated(
                name=body.name, slug=body.slug, admin_id=admin_id,
                admin_username=body.admin.username, admin_email=body.admin.email,
            ),
            subject_id=tenant_id,
        )
        user = await self.add_user(session, body.admin, user_id=admin_id, audited=False)
        if user.status == UserStatus.PENDING_VERIFICATION:
            return tenant, user, None
        return tenant, user, await self.issue_session(session, user, client=client)

    # ---- users --------------------------------------------------------------------------
    async def add_user(
        self,
        session: AsyncSession,
        body: UserCreate,
        *,
        user_id: UUID | None = None,
        audited: bool = True,
    ) -> User:
        """Create a user in the transaction's tenant with no permission check: for the
        system (sign-up, CLI). Requests go through ``create_user``. ``audited=False`` when
        the creation is part of another audited write (sign-up's tenant.created)."""
        self._require_email(body.email, "email")
        repo = IdentityRepository(session)
        taken = await repo.username_or_email_taken(body.username, body.email)
        if taken:
            raise DuplicateUser(
                f"That {taken} is already used in this tenant.",
                errors=[_field(taken, "already used")],
            )
        pending = self.config.require_email_verification
        user = User(
            **body.model_dump(mode="json", exclude={"password"}),
            id=user_id or uuid4(),
            tenant_id=repo.tenant_id,
            status=(UserStatus.PENDING_VERIFICATION if pending else UserStatus.ACTIVE).value,
            password_hash=await self.passwords.hash(body.password),
            token_version=0,
        )
        try:
            await repo.add(user)
        except IntegrityError as exc:
            raise DuplicateUser("That username or email is already used in this tenant.") from exc
        await emit(
            session,
            events.UserCreated.model_validate(user, from_attributes=True),
            subject_id=user.id,
            audited=audited,
        )
        if pending:
            await self._request_verification(session, user)
        return user

    def _require_email(self, email: str | None, field: str) -> None:
        """A user who must verify an email address cannot be made without one: they
        could never log in."""
        if self.config.require_email_verification and not email:
            raise ValidationFailed(
                "An email address is required: new users must verify theirs.",
                errors=[_field(field, "required while email verification is on")],
            )

    async def _request_verification(self, session: AsyncSession, user: User) -> None:
        token = await self.issue_action_token(
            session, user, "verify_email", self.config.email_token_ttl, VERIFY_PREFIX
        )
        await emit(
            session,
            events.VerificationRequested(email=user.email),
            subject_id=user.id,
            audited=False,  # part of the user's creation, which is the audited event
        )
        await self.sender.send_verification(
            tenant_id=user.tenant_id,
            user_id=user.id,
            email=user.email,
            token=token,
            session=session,
        )

    async def _require(
        self,
        session: AsyncSession,
        auth: AuthContext,
        action: UserAction,
        target: UUID | None = None,
    ) -> None:
        if not user_may(auth, action, target_is_self=target == auth.user_id):
            raise await deny(
                session, auth, action.value, subject_type="user",
                subject_id=target or auth.user_id,
            )

    async def get_user(
        self, session: AsyncSession, auth: AuthContext, user_id: UUID
    ) -> Record:
        await self._require(session, auth, UserAction.READ, user_id)
        user = await IdentityRepository(session, auth.tenant_id).read_user(user_id)
        if user is None:
            raise NotFound("No such user.")
        return user

    async def list_users(
        self,
        session: AsyncSession,
        auth: AuthContext,
        *,
        role: Role | None,
        status: UserStatus | None,
        q: str | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[User], str | None]:
        await self._require(session, auth, UserAction.LIST)
        after = decode_time_id_cursor(cursor)
        rows = await IdentityRepository(session, auth.tenant_id).list_users(
            role=role.value if role else None,
            status=status.value if status else None,
            q=q,
            after=after,
            limit=limit + 1,
        )
        return cut_time_id_page(rows, limit, lambda user: (user.created_at, user.id))

    async def create_user(
        self, session: AsyncSession, auth: AuthContext, *, body: UserCreate
    ) -> User:
        await self._require(session, auth, UserAction.CREATE)
        return await self.add_user(session, body)

    async def update_user(
        self, session: AsyncSession, auth: AuthContext, user_id: UUID, *, body: UserUpdate
    ) -> User:
        sent = body.model_fields_set
        repo = IdentityRepository(session, auth.tenant_id)
        if await repo.get_user(user_id) is None:
            raise NotFound("No such user.")
        if sent & {"role", "status"}:
            await self._require(session, auth, UserAction.UPDATE_ROLE_OR_STATUS, user_id)
        await self._require(session, auth, UserAction.UPDATE_PROFILE, user_id)
        refuse_nulls(body, _NOT_NULL)

        demoting = "role" in sent and body.role is not Role.ADMIN
        deactivating = "status" in sent and body.status is UserStatus.INACTIVE
        if demoting or deactivating:
            admins = await repo.lock_active_admins()
            if admins == [user_id]:
                raise LastAdmin()
        user = await repo.get_user(user_id, for_update=True)
        if user is None:
            raise NotFound("No such user.")

        email_changes = (
            "email" in sent and body.email and body.email.lower() != (user.email or "").lower()
        )
        if email_changes and await repo.username_or_email_taken(None, body.email, exclude=user.id):
            raise DuplicateUser(
                "That email is already used in this tenant.",
                errors=[_field("email", "already used")],
            )

        changes: dict[str, list[Any]] = {}
        # The sent fields as column values: UserUpdate is the list of what may change.
        for field, new in body.model_dump(mode="json", include=sent).items():
            old = getattr(user, field)
            if new != old:
                changes[camel(field)] = [old, new]
                setattr(user, field, new)
        if not changes:
            return user
        user.updated_at = now()
        revoke = "status" in changes and user.status == UserStatus.INACTIVE
        if "role" in changes or revoke:
            user.token_version += 1
        if revoke:
            await repo.revoke_user_sessions(user.id, now())
            await AccessTokenRepository(session, auth.tenant_id).revoke_all(user.id, now())
        try:
            await session.flush()
        except IntegrityError as exc:
            raise DuplicateUser("That email is already used in this tenant.") from exc
        # One write, one event: its type says what kind of change it was (the audit trail
        # records exactly one entry per change), and `changes` carries every field.
        kind: type[events.UserUpdated | events.UserDeactivated | events.UserRoleChanged
                   | events.UserStatusChanged]
        if revoke:
            kind = events.UserDeactivated
        elif "role" in changes:
            kind = events.UserRoleChanged
        elif "status" in changes:
            kind = events.UserStatusChanged
        else:
            kind = events.UserUpdated
        await emit(session, kind(changes=changes), subject_id=user.id)
        return user

    async def deactivate_user(
        self, session: AsyncSession, auth: AuthContext, user_id: UUID
    ) -> None:
        if await IdentityRepository(session, auth.tenant_id).get_user(user_id) is None:
            raise NotFound("No such user.")
        await self._require(session, auth, UserAction.DEACTIVATE, user_id)
        await self.update_user(session, auth, user_id, body=UserUpdate(status=UserStatus.INACTIVE))

    async def change_password(
        self, session: AsyncSession, auth: AuthContext, *, body: PasswordChange
    ) -> None:
        repo = IdentityRepository(session, auth.tenant_id)
        user = await repo.get_user(auth.user_id, for_update=True)
        if user is None:
            raise NotFound("No such user.")
        if not await self.passwords.verify(user.password_hash, body.current_password):
            await password_change_failed(session, user.id, "bad_credentials")
            raise WrongCurrentPassword()
        await self.set_password(session, user, body.new_password, keep_session=auth.session_id)

    async def set_password(
        self, session: AsyncSession, user: User, password: str, *,
        keep_session: UUID | None = None,
    ) -> None:
        """New hash; every login session of the user revoked but ``keep_session`` (the
        one that changed it), whose access token goes on working. Without one to keep (a
        reset), every access token is revoked too."""
        repo = IdentityRepository(session, user.tenant_id)
        user.password_hash = await self.passwords.hash(password)
        if keep_session is None:
            user.token_version += 1
        user.updated_at = now()
        await repo.revoke_user_sessions(user.id, now(), keep=keep_session)
        await session.flush()
        await emit(session, events.UserPasswordChanged(), subject_id=user.id)


async def password_change_failed(session: AsyncSession, user_id: UUID, reason: str) -> None:
    await emit(session, events.PasswordChangeFailed(reason=reason), subject_id=user_id)


def _field(name: str, message: str) -> FieldError:
    return FieldError(name, message)
