"""Authentication: login, refresh-token rotation with reuse detection, logout, email
verification, password reset, and the per-request principal check.

Failures that matter to security (a wrong password, a replayed refresh token) raise errors
marked ``commit=True``: the request fails, but its event and any revocation are kept.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.clock import now
from pantherahive.core.errors import RateLimited, Unauthenticated
from pantherahive.domains.identity import events
from pantherahive.domains.identity.access_tokens import service as access_tokens
from pantherahive.domains.identity.errors import (
    EmailNotVerified,
    GuessThrottled,
    InvalidActionToken,
    InvalidCredentials,
    RefreshTokenRejected,
    WrongCurrentPassword,
)
from pantherahive.domains.identity.mfa import IssuedChallenge, SecondFactor
from pantherahive.domains.identity.repository import IdentityRepository, TenantDirectory
from pantherahive.domains.identity.schemas import PasswordChange, UserStatus
from pantherahive.domains.identity.service import (
    REFRESH_PREFIX,
    RESET_PREFIX,
    VERIFY_PREFIX,
    ClientInfo,
    IdentityService,
    IssuedTokens,
    password_change_failed,
)
from pantherahive.domains.identity.tables import RefreshToken, User
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.context import bind_principal
from pantherahive.infra.db.engine import set_tenant
from pantherahive.infra.ratelimit import RateLimits
from pantherahive.infra.security.principal import AuthContext, Role
from pantherahive.infra.security.tokens import PERSONAL_PREFIX, parse_opaque_token


class Authenticator:
    def __init__(
        self,
        identity: IdentityService,
        limits: RateLimits,
        failure_limit: str,
        second_factor: SecondFactor,
    ) -> None:
        self.identity = identity
        self.limits = limits
        self.failure_item = limits.parse(failure_limit)
        self.second_factor = second_factor

    async def principal(self, session: AsyncSession, access_token: str) -> AuthContext:
        """Verify the JWT, then read the user's *live* role, status and token version and
        whether the token's session is still on, so a deactivation, role change, password
        change or ended session takes effect on the next request. A personal access token
        (``ph_pat_…``) is looked up instead, with its scopes."""
        if access_token.startswith(PERSONAL_PREFIX):
            return await access_tokens.authenticate(session, access_token)
        claims = self.identity.tokens.verify(access_token)
        row = await TenantDirectory(session).principal(
            claims.tenant_id, claims.user_id, claims.session_id
        )
        if row is None:
            raise Unauthenticated("The access token is not valid.")
        role, status, version = row
        if status != UserStatus.ACTIVE or version != claims.token_version:
            raise Unauthenticated("The access token has been revoked.")
        bind_principal(claims.tenant_id, claims.user_id)
        return AuthContext(
            tenant_id=claims.tenant_id, user_id=claims.user_id, role=Role(role),
            session_id=claims.session_id,
        )

    async def login(
        self,
        session: AsyncSession,
        *,
        tenant_slug: str,
        login: str,
        password: str,
        client: ClientInfo,
    ) -> IssuedTokens | IssuedChallenge:
        """Tokens, or (the user has 2FA on, or the tenant requires it) a challenge that
        ``POST /v1/auth/login/2fa`` completes (see ``mfa``)."""
        # Each attempt spends its unit of both budgets before the password is checked, so
        # parallel guesses cannot all slip past a check that only counts finished ones.
        limit = self.failure_item
        login_key = ("login", tenant_slug, login.lower())
        ip_key = ("login-ip", client.ip or "unknown")
        try:
            await self.limits.consume(limit, *login_key)
            try:
                await self.limits.consume(limit, *ip_key)
            except RateLimited:
                await self.limits.refund(limit, *login_key)  # this attempt guessed nothing
                raise
        except RateLimited as refused:
            raise await self._throttled(session, tenant_slug, login, refused) from refused

        try:
            tenant_id = await TenantDirectory(session).tenant_id_for_slug(tenant_slug)
            user: User | None = None
            if tenant_id is not None:
                await set_tenant(session, tenant_id)
                user = await IdentityRepository(session, tenant_id).find_user_by_login(login)
            ok = await self.identity.passwords.verify(
                user.password_hash if user else None, password
            )
        except Exception:
            # Nothing was learnt about the password (the database is down, say): give the
            # units back rather than lock the user out for an outage.
            await self.limits.refund(limit, *login_key)
            await self.limits.refund(limit, *ip_key)
            raise
        if not ok or user is None or user.status == UserStatus.INACTIVE:
            if tenant_id is not None:
                reason = "bad_credentials" if not ok or user is None else "inactive"
                await _login_failed(session, tenant_id, user, login, reason)
            raise InvalidCredentials()
        # The right password: this login's failures are forgiven; the IP gets back only
        # this attempt's unit, so one good login cannot launder an IP's guesses elsewhere.
        await self.limits.clear(limit, *login_key)
        await self.limits.refund(limit, *ip_key)
        if user.status == UserStatus.PENDING_VERIFICATION:
            raise EmailNotVerified()
        bind_principal(user.tenant_id, user.id)
        if self.identity.passwords.needs_rehash(user.password_hash):
            user.password_hash = await self.identity.passwords.hash(password)
        challenge = await self.second_factor.challenge_if_due(session, user)
        if challenge is not None:
            return challenge
        await emit(session, events.LoginSucceeded(), subject_id=user.id)
        return await self.identity.issue_session(session, user, client=client)

    async def _throttled(
        self, session: AsyncSession, tenant_slug: str, login: str, refused: RateLimited
    ) -> RateLimited:
        """A throttled attempt is a failed login too: record it (the returned 429
        commits, so the event stays) unless the tenant is unknown."""
        tenant_id = await TenantDirectory(session).tenant_id_for_slug(tenant_slug)
        if tenant_id is None:
            return refused
        await set_tenant(session, tenant_id)
        user = await IdentityRepository(session, tenant_id).find_user_by_login(login)
        await _login_failed(session, tenant_id, user, login, "throttled")
        return GuessThrottled.of(refused)

    async def change_password(
        self, session: AsyncSession, auth: AuthContext, *, body: PasswordChange
    ) -> None:
        """A wrong current password is a guess like a failed login, so the same failure
        limit applies, counted per user: a stolen access token cannot be used to guess
        the password that would take the account over (a password change revokes every
        other session). Spent before the check, given back on an outage, reset by the
        right password; a throttled attempt records its auth.password_change_failed."""
        limit = self.failure_item
        key = ("password-change", str(auth.tenant_id), str(auth.user_id))
        try:
            await self.limits.consume(limit, *key)
        except RateLimited as refused:
            await password_change_failed(session, auth.user_id, "throttled")
            raise GuessThrottled.of(refused) from refused
        try:
            await self.identity.change_password(session, auth, body=body)
        except WrongCurrentPassword:
            raise
        except Exception:
            await self.limits.refund(limit, *key)
            raise
        await self.limits.clear(limit, *key)

    async def refresh(
        self, session: AsyncSession, refresh_token: str, client: ClientInfo | None = None
    ) -> IssuedTokens:
        repo, row, user = await self._refresh_row(session, refresh_token)
        current = now()
        if row.used_at is not None:
            # A token that was already rotated came back: two parties hold copies of it
            # (the rightful client has moved on to its successor). Burn the whole family.
            # A merely *revoked* one (logout, deactivation, password change) is no such
            # signal and falls through to a plain 401 below.
            await repo.revoke_family(row.family_id, current)
            bind_principal(row.tenant_id, row.user_id)
            await emit(
                session, events.RefreshReused(family_id=row.family_id), subject_id=row.user_id
            )
            raise RefreshTokenRejected()
        if (
            row.revoked_at is not None
            or row.expires_at <= current
            or user is None
            or user.status != UserStatus.ACTIVE
        ):
            raise Unauthenticated("The refresh token is not valid.")
        row.used_at = current
        await session.flush()
        bind_principal(user.tenant_id, user.id)
        await emit(
            session, events.TokenRefreshed(family_id=row.family_id), subject_id=user.id
        )
        return await self.identity.issue_session(
            session, user, family_id=row.family_id, client=client
        )

    async def logout(self, session: AsyncSession, refresh_token: str) -> None:
        repo, row, _user = await self._refresh_row(session, refresh_token)
        await repo.revoke_family(row.family_id, now())
        bind_principal(row.tenant_id, row.user_id)
        await emit(
            session, events.LoggedOut(family_id=row.family_id), subject_id=row.user_id
        )

    async def _refresh_row(
        self, session: AsyncSession, token: str
    ) -> tuple[IdentityRepository, RefreshToken, User | None]:
        parsed = parse_opaque_token(REFRESH_PREFIX, token)
        if parsed is None:
            raise Unauthenticated("The refresh token is not valid.")
        tenant_id, token_hash = parsed
        await set_tenant(session, tenant_id)
        repo = IdentityRepository(session, tenant_id)
        row = await repo.refresh_token_by_hash(token_hash)
        if row is None:
            raise Unauthenticated("The refresh token is not valid.")
        return repo, row, await repo.get_user(row.user_id)

    async def verify_email(self, session: AsyncSession, token: str) -> None:
        user = await self._consume_action_token(session, token, "verify_email", VERIFY_PREFIX)
        if user.status == UserStatus.PENDING_VERIFICATION:
            user.status = UserStatus.ACTIVE.value
        user.email_verified_at = now()
        user.updated_at = now()
        await session.flush()
        await emit(session, events.UserEmailVerified(email=user.email), subject_id=user.id)

    async def request_password_reset(
        self, session: AsyncSession, *, tenant_slug: str, email: str
    ) -> None:
        """Always succeeds from the caller's view: no account enumeration."""
        tenant_id = await TenantDirectory(session).tenant_id_for_slug(tenant_slug)
        if tenant_id is None:
            return
        await set_tenant(session, tenant_id)
        repo = IdentityRepository(session, tenant_id)
        user = await repo.find_user_by_email(email)
        if user is None or user.status == UserStatus.INACTIVE or user.email is None:
            return
        bind_principal(tenant_id, None)
        await repo.expire_action_tokens(user.id, "password_reset", now())
        token = await self.identity.issue_action_token(
            session, user, "password_reset", self.identity.config.reset_token_ttl, RESET_PREFIX
        )
        await emit(session, events.PasswordResetRequested(), subject_id=user.id)
        await self.identity.sender.send_password_reset(
            tenant_id=tenant_id, user_id=user.id, email=user.email, token=token,
            session=session,
        )

    async def confirm_password_reset(
        self, session: AsyncSession, *, token: str, new_password: str
    ) -> None:
        user = await self._consume_action_token(session, token, "password_reset", RESET_PREFIX)
        if user.status == UserStatus.INACTIVE:
            raise InvalidActionToken()
        await self.identity.set_password(session, user, new_password)

    async def _consume_action_token(
        self, session: AsyncSession, token: str, purpose: str, prefix: str
    ) -> User:
        parsed = parse_opaque_token(prefix, token)
        if parsed is None:
            raise InvalidActionToken()
        tenant_id, token_hash = parsed
        await set_tenant(session, tenant_id)
        repo = IdentityRepository(session, tenant_id)
        row = await repo.action_token_by_hash(token_hash, purpose)
        if row is None or row.used_at is not None or row.expires_at <= now():
            raise InvalidActionToken()
        row.used_at = now()
        user = await repo.get_user(row.user_id, for_update=True)
        if user is None:
            raise InvalidActionToken()
        bind_principal(tenant_id, user.id)
        return user


async def _login_failed(
    session: AsyncSession, tenant_id: UUID, user: User | None, login: str, reason: str
) -> None:
    """auth.login_failed, with no actor (nobody is logged in), about the user when the
    login names one."""
    bind_principal(tenant_id, None)
    await emit(
        session,
        events.LoginFailed(login=login[:254], reason=reason),
        subject_id=user.id if user else login[:100],
    )
