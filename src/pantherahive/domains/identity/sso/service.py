"""Single sign-on's rules: the tenant's settings, and a sign-in from start to callback.

A sign-in starts with a server-side row (state hashed, nonce, PKCE verifier) and ends at
the callback, which consumes that row once, exchanges the code, validates the ID token
(``oidc.py``) and logs in the user whose verified email it carries — or creates a MEMBER
when the tenant allows just-in-time provisioning. Every refusal after the tenant is known
records ``auth.login_failed`` (reason ``oidc_…``) and commits it with the consumed state.

The state alone would let someone finish *their* sign-in in another person's browser
(login CSRF: send the victim the callback URL of your own sign-in, and the victim's app is
now signed in as you). So ``start`` also sets a cookie, named after the state, whose value
only the browser holds (its hash is in the row); the callback needs it back.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit
from uuid import UUID, uuid4

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.clock import now
from pantherahive.domains.identity import events
from pantherahive.domains.identity.errors import DuplicateUser, EmailNotVerified
from pantherahive.domains.identity.repository import IdentityRepository, TenantDirectory
from pantherahive.domains.identity.schemas import UserStatus
from pantherahive.domains.identity.service import IdentityService, IssuedTokens
from pantherahive.domains.identity.sso.errors import (
    ClientSecretRequired,
    InsecureIssuer,
    IssuerUnavailable,
    SsoAccountNotProvisioned,
    SsoNotAvailable,
    SsoSignInRefused,
)
from pantherahive.domains.identity.sso.oidc import (
    OidcClient,
    OidcRejected,
    ProviderMetadata,
    ProviderUnreachable,
    VerifiedIdentity,
)
from pantherahive.domains.identity.sso.permissions import SsoAction, sso_may
from pantherahive.domains.identity.sso.repository import SsoRepository
from pantherahive.domains.identity.sso.schemas import SsoSettingsRead, SsoSettingsUpdate
from pantherahive.domains.identity.sso.tables import OidcLoginState, SsoLink, TenantSso
from pantherahive.domains.identity.tables import User
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.context import bind_principal
from pantherahive.infra.db.engine import set_tenant
from pantherahive.infra.security import crypto
from pantherahive.infra.security.authz import deny
from pantherahive.infra.security.principal import AuthContext, Role

_USERNAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class SsoConfig:
    app_base_url: str
    allow_http_issuers: bool
    login_ttl: timedelta


@dataclass(frozen=True, slots=True)
class Started:
    """Where to send the browser, and the cookie that binds the sign-in to it."""

    authorization_url: str
    cookie_name: str
    cookie_value: str
    cookie_path: str
    cookie_max_age: int
    cookie_secure: bool


@dataclass(frozen=True, slots=True)
class SignIn:
    """A finished sign-in: the tokens, and where to send them (None: answer them)."""

    tokens: IssuedTokens
    app_redirect_url: str | None


class SingleSignOn:
    def __init__(
        self, *, identity: IdentityService, oidc: OidcClient, key: bytes, config: SsoConfig
    ) -> None:
        self.identity = identity
        self.oidc = oidc
        self._key = key
        self.config = config

    def redirect_uri(self, tenant_slug: str) -> str:
        return f"{self.config.app_base_url.rstrip('/')}/v1/auth/oidc/{tenant_slug}/callback"

    # ---- settings ---------------------------------------------------------------------------
    @staticmethod
    async def _require(session: AsyncSession, auth: AuthContext, action: SsoAction) -> None:
        if not sso_may(auth, action):
            raise await deny(
                session, auth, action.value, subject_type="tenant", subject_id=auth.tenant_id,
                detail="Only ADMINs may manage single sign-on.",
            )

    async def get_settings(self, session: AsyncSession, auth: AuthContext) -> SsoSettingsRead:
        await self._require(session, auth, SsoAction.READ_SETTINGS)
        return await self._read(session, auth.tenant_id)

    async def _read(self, session: AsyncSession, tenant_id: UUID) -> SsoSettingsRead:
        repo = SsoRepository(session, tenant_id)
        row = await repo.settings()
        tenant = await TenantDirectory(session).get_tenant(tenant_id)
        assert tenant is not None  # the caller's own tenant
        return SsoSettingsRead(
            issuer=row.issuer if row else None,
            client_id=row.client_id if row else None,
            client_secret_set=row is not None,
            enabled=row.enabled if row else False,
            jit_provisioning=row.jit_provisioning if row else False,
            require_2fa=await repo.require_2fa(),
            app_redirect_url=row.app_redirect_url if row else None,
            redirect_uri=self.redirect_uri(tenant.slug),
            updated_at=row.updated_at if row else None,
        )

    async def put_settings(
        self, session: AsyncSession, auth: AuthContext, *, body: SsoSettingsUpdate
    ) -> SsoSettingsRead:
        """One audited ``tenant.sso_updated`` per write that changes something; the secret
        never enters the event (only whether it changed)."""
        await self._require(session, auth, SsoAction.UPDATE_SETTINGS)
        if not self.config.allow_http_issuers and not body.issuer.startswith("https://"):
            raise InsecureIssuer("issuer")
        repo = SsoRepository(session, auth.tenant_id)
        row = await repo.settings(for_update=True)
        if row is None and body.client_secret is None:
            raise ClientSecretRequired()
        before = await self._read(session, auth.tenant_id)
        context = _secret_context(auth.tenant_id)
        secret_changed = body.client_secret is not None and (
            row is None or self._stored_secret(row) != body.client_secret
        )
        values = {
            "issuer": body.issuer,
            "client_id": body.client_id,
            "enabled": body.enabled,
            "jit_provisioning": body.jit_provisioning,
            "app_redirect_url": body.app_redirect_url,
        }
        if row is None:
            assert body.client_secret is not None
            row = TenantSso(
                tenant_id=auth.tenant_id,
                client_secret_enc=crypto.encrypt(
                    self._key, body.client_secret.encode(), context=context
                ),
                **values,
            )
            await repo.add(row)
        else:
            for field, value in values.items():
                setattr(row, field, value)
            if secret_changed and body.client_secret is not None:
                row.client_secret_enc = crypto.encrypt(
                    self._key, body.client_secret.encode(), context=context
                )
        if body.require_2fa != before.require_2fa:
            await repo.set_require_2fa(body.require_2fa)
        changes = {
            name: [getattr(before, field), value]
            for field, name, value in (
                ("issuer", "issuer", body.issuer),
                ("client_id", "clientId", body.client_id),
                ("enabled", "enabled", body.enabled),
                ("jit_provisioning", "jitProvisioning", body.jit_provisioning),
                ("require_2fa", "require2fa", body.require_2fa),
                ("app_redirect_url", "appRedirectUrl", body.app_redirect_url),
            )
            if getattr(before, field) != value
        }
        if not changes and not secret_changed:
            return before
        row.updated_at = now()
        await session.flush()
        await emit(
            session,
            events.TenantSsoUpdated(changes=changes, client_secret_changed=secret_changed),
            subject_id=auth.tenant_id,
        )
        return await self._read(session, auth.tenant_id)

    def _stored_secret(self, row: TenantSso) -> str | None:
        """The client secret, or None when the platform secret it was stored under has
        changed since (an ADMIN sets it again)."""
        try:
            return crypto.decrypt(
                self._key, row.client_secret_enc, context=_secret_context(row.tenant_id)
            ).decode()
        except crypto.UndecryptableSecret:
            return None

    # ---- sign-in ----------------------------------------------------------------------------
    async def _enabled_settings(
        self, session: AsyncSession, tenant_slug: str
    ) -> tuple[UUID, TenantSso]:
        tenant_id = await TenantDirectory(session).tenant_id_for_slug(tenant_slug)
        if tenant_id is None:
            raise SsoNotAvailable()
        await set_tenant(session, tenant_id)
        row = await SsoRepository(session, tenant_id).settings()
        if row is None or not row.enabled:
            raise SsoNotAvailable()
        return tenant_id, row

    async def _metadata(self, issuer: str) -> ProviderMetadata:
        try:
            return await self.oidc.metadata(issuer)
        except ProviderUnreachable as exc:
            raise IssuerUnavailable() from exc

    async def start(self, session: AsyncSession, *, tenant_slug: str) -> Started:
        """The issuer's authorization URL for a new sign-in (state, nonce and PKCE verifier
        kept here, the state only as its hash) and its browser cookie. Not an event:
        nothing about the tenant changed, and the callback records the outcome."""
        tenant_id, settings = await self._enabled_settings(session, tenant_slug)
        metadata = await self._metadata(settings.issuer)
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        browser = secrets.token_urlsafe(32)
        code_verifier = secrets.token_urlsafe(64)  # 86 characters: RFC 7636 allows 43..128
        repo = SsoRepository(session, tenant_id)
        current = now()
        await repo.purge_login_states(current)
        await repo.add(
            OidcLoginState(
                id=uuid4(),
                tenant_id=tenant_id,
                state_hash=_hash(state),
                browser_hash=_hash(browser),
                nonce=nonce,
                code_verifier=code_verifier,
                issuer=settings.issuer,
                client_id=settings.client_id,
                expires_at=current + self.config.login_ttl,
            )
        )
        url = self.oidc.authorization_url(
            metadata,
            client_id=settings.client_id,
            redirect_uri=self.redirect_uri(tenant_slug),
            state=state,
            nonce=nonce,
            code_verifier=code_verifier,
        )
        return Started(
            authorization_url=url,
            cookie_name=browser_cookie_name(state),
            cookie_value=browser,
            cookie_path=urlsplit(self.redirect_uri(tenant_slug)).path,
            cookie_max_age=int(self.config.login_ttl.total_seconds()),
            cookie_secure=self.config.app_base_url.startswith("https://"),
        )

    async def callback(
        self,
        session: AsyncSession,
        *,
        tenant_slug: str,
        state: str,
        code: str | None,
        error: str | None,
        browser: str | None,
    ) -> SignIn:
        """``browser``: the value of the state's cookie (:func:`browser_cookie_name`)."""
        tenant_id, settings = await self._enabled_settings(session, tenant_slug)
        repo = SsoRepository(session, tenant_id)
        login = await repo.login_state(_hash(state))
        # Unknown (another tenant's included), used (a replay) or expired: one answer.
        if login is None or login.used_at is not None or login.expires_at <= now():
            raise await _refused(session, tenant_id, "oidc_state_invalid")
        login.used_at = now()
        await session.flush()
        if browser is None or not secrets.compare_digest(_hash(browser), login.browser_hash):
            raise await _refused(session, tenant_id, "oidc_browser_mismatch")
        if error or not code:
            raise await _refused(session, tenant_id, "oidc_provider_error")
        if (login.issuer, login.client_id) != (settings.issuer, settings.client_id):
            raise await _refused(session, tenant_id, "oidc_settings_changed")
        metadata = await self._metadata(settings.issuer)
        secret = self._stored_secret(settings)
        if secret is None:
            raise await _refused(session, tenant_id, "oidc_client_secret_unreadable")
        try:
            tokens = await self.oidc.exchange_code(
                metadata,
                client_id=settings.client_id,
                client_secret=secret,
                code=code,
                code_verifier=login.code_verifier,
                redirect_uri=self.redirect_uri(tenant_slug),
            )
            person = await self.oidc.verify_id_token(
                metadata, tokens, client_id=settings.client_id, nonce=login.nonce
            )
        except OidcRejected as rejected:
            raise await _refused(session, tenant_id, rejected.reason) from rejected
        except ProviderUnreachable as exc:
            raise IssuerUnavailable() from exc
        user = await self._user_for(session, tenant_id, settings, person)
        bind_principal(tenant_id, user.id)
        issued = await self.identity.issue_session(session, user)
        return SignIn(issued, settings.app_redirect_url)

    async def _user_for(
        self,
        session: AsyncSession,
        tenant_id: UUID,
        settings: TenantSso,
        person: VerifiedIdentity,
    ) -> User:
        """The tenant's user this identity logs in as: the one linked to its subject, else
        the one with its verified email (linked from then on, unless already linked to
        another subject of the issuer), else a new MEMBER when provisioning is on. Only
        an ACTIVE user logs in, like a password login."""
        login_name = person.email or person.subject
        sso = SsoRepository(session, tenant_id)
        repo = IdentityRepository(session, tenant_id)
        linked = await sso.linked_user(settings.issuer, person.subject)
        user = await repo.get_user(linked) if linked is not None else None
        if user is None:
            if person.email is None or not person.email_verified or len(person.email) > 254:
                raise await _refused(session, tenant_id, "oidc_email_unverified", login_name)
            user = await repo.find_user_by_email(person.email)
            if user is None:
                if not settings.jit_provisioning:
                    await _login_failed(session, tenant_id, None, login_name, "oidc_no_account")
                    raise SsoAccountNotProvisioned()
                user = await self._provision(session, tenant_id, person, person.email)
                await self._link(sso, settings.issuer, person.subject, user)
                return user
            if await sso.user_is_linked(user.id, settings.issuer):
                raise await _refused(
                    session, tenant_id, "oidc_linked_to_another_subject", login_name, user
                )
            if user.status == UserStatus.ACTIVE:
                await self._link(sso, settings.issuer, person.subject, user)
        if user.status == UserStatus.INACTIVE:
            raise await _refused(session, tenant_id, "oidc_inactive", login_name, user)
        if user.status == UserStatus.PENDING_VERIFICATION:
            raise EmailNotVerified()
        bind_principal(tenant_id, user.id)
        await emit(session, events.LoginSucceeded(method="oidc"), subject_id=user.id)
        return user

    @staticmethod
    async def _link(sso: SsoRepository, issuer: str, subject: str, user: User) -> None:
        try:
            await sso.add(
                SsoLink(tenant_id=user.tenant_id, issuer=issuer, subject=subject,
                        user_id=user.id)
            )
        except IntegrityError as exc:  # a sign-in of the same identity racing this one
            raise DuplicateUser("This identity was just linked; sign in again.") from exc

    async def _provision(
        self, session: AsyncSession, tenant_id: UUID, person: VerifiedIdentity, email: str
    ) -> User:
        """A new ACTIVE MEMBER whose email the issuer verified. Its password is random and
        never shown: the account signs in through the issuer (or after a reset). The
        creation is the audited event; the login that comes with it is derived."""
        repo = IdentityRepository(session, tenant_id)
        user = User(
            id=uuid4(),
            tenant_id=tenant_id,
            username=await _free_username(repo, email),
            email=email,
            first_name=person.given_name,
            last_name=person.family_name,
            role=Role.MEMBER.value,
            status=UserStatus.ACTIVE.value,
            password_hash=await self.identity.passwords.hash(secrets.token_urlsafe(32)),
            token_version=0,
            email_verified_at=now(),
        )
        try:
            await repo.add(user)
        except IntegrityError as exc:
            raise DuplicateUser("That username or email was just taken; sign in again.") from exc
        bind_principal(tenant_id, user.id)
        await emit(
            session, events.UserCreated.model_validate(user, from_attributes=True),
            subject_id=user.id,
        )
        await emit(
            session, events.LoginSucceeded(method="oidc"), subject_id=user.id, audited=False
        )
        return user


async def _free_username(repo: IdentityRepository, email: str) -> str:
    """A username from the email's local part, made valid (``[A-Za-z0-9][A-Za-z0-9._-]*``,
    3..50) and unique in the tenant with a suffix when taken."""
    base = _USERNAME_CHARS.sub("", email.split("@", 1)[0]).lstrip("._-")[:40]
    if len(base) < 3:
        base = f"user{base}"
    candidates = [base, *(f"{base}-{n}" for n in range(2, 10))]
    for candidate in candidates:
        if await repo.username_or_email_taken(candidate, None) is None:
            return candidate
    return f"{base}-{secrets.token_hex(4)}"


async def _refused(
    session: AsyncSession,
    tenant_id: UUID,
    reason: str,
    login: str = "oidc",
    user: User | None = None,
) -> SsoSignInRefused:
    await _login_failed(session, tenant_id, user, login, reason)
    return SsoSignInRefused()


async def _login_failed(
    session: AsyncSession, tenant_id: UUID, user: User | None, login: str, reason: str
) -> None:
    """auth.login_failed with no actor, about the user when one is known."""
    bind_principal(tenant_id, None)
    await emit(
        session,
        events.LoginFailed(login=login[:254], reason=reason),
        subject_id=user.id if user else login[:100],
    )


def browser_cookie_name(state: str) -> str:
    """The cookie of one sign-in, named after its state so that sign-ins started in two
    tabs of one browser do not overwrite each other's."""
    return "ph_oidc_" + hashlib.sha256(state.encode("utf-8")).hexdigest()[:16]


def _hash(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def _secret_context(tenant_id: UUID) -> bytes:
    return b"identity.sso.client_secret:" + tenant_id.bytes
