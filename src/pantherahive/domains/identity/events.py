"""The events identity publishes: its public contract with the rest of the platform.

Subjects are the tenant (``tenant.created``) or the user. ``user.updated``,
``user.role_changed``, ``user.status_changed`` and ``user.deactivated`` are the four
names of one kind of write (a user's fields changed); the type says which kind, and
``changes`` carries every changed field as ``[old, new]`` with camelCase names.
``authz.denied`` is declared with the security kit (``infra.security.authz``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pantherahive.core.events import EventData


class TenantCreated(EventData, type="tenant.created", subject="tenant"):
    """A tenant signed up; its first ADMIN's ``user.created`` accompanies it."""

    name: str
    slug: str
    admin_id: UUID
    admin_username: str
    admin_email: str | None


class TenantSsoUpdated(EventData, type="tenant.sso_updated", subject="tenant"):
    """The tenant's single sign-on settings changed. ``changes`` has every changed field
    but the client secret, which never appears: ``clientSecretChanged`` says whether it
    was replaced."""

    changes: dict[str, list[Any]]
    client_secret_changed: bool


class UserCreated(EventData, type="user.created", subject="user"):
    username: str
    email: str | None
    role: str
    status: str


class _UserChanged(EventData):
    changes: dict[str, list[Any]]


class UserUpdated(_UserChanged, type="user.updated", subject="user"):
    """Names or email changed."""


class UserRoleChanged(_UserChanged, type="user.role_changed", subject="user"):
    """The role changed (other fields may have changed in the same write)."""


class UserStatusChanged(_UserChanged, type="user.status_changed", subject="user"):
    """The status changed, other than to INACTIVE."""


class UserDeactivated(_UserChanged, type="user.deactivated", subject="user"):
    """The user became INACTIVE: sessions and personal access tokens revoked; projects drop
    their memberships."""


class UserPasswordChanged(EventData, type="user.password_changed", subject="user"):
    """Every other session of the user was revoked with it (a reset: every session and
    access token)."""


class UserEmailVerified(EventData, type="user.email_verified", subject="user"):
    email: str | None


class LoginSucceeded(EventData, type="auth.login_succeeded", subject="user"):
    """``method`` is ``oidc`` for a single sign-on; left out for a password login."""

    method: str | None = None


class LoginFailed(EventData, type="auth.login_failed", subject="user"):
    """The subject is the user when the login names one, else the login as sent."""

    login: str
    reason: str


class _FamilyEvent(EventData):
    family_id: UUID


class TokenRefreshed(_FamilyEvent, type="auth.token_refreshed", subject="user"):
    pass


class LoggedOut(_FamilyEvent, type="auth.logged_out", subject="user"):
    pass


class RefreshReused(_FamilyEvent, type="auth.refresh_reused", subject="user"):
    """A dead refresh token came back: its whole family was revoked."""


class PasswordChangeFailed(EventData, type="auth.password_change_failed", subject="user"):
    reason: str


class PasswordResetRequested(EventData, type="auth.password_reset_requested", subject="user"):
    pass


class VerificationRequested(
    EventData, type="auth.email_verification_requested", subject="user"
):
    """Derived (not audited): part of the user's creation."""

    email: str | None


class AccessTokenCreated(EventData, type="user.token_created", subject="user"):
    """The user made a personal access token (never the token or its hash here)."""

    token_id: UUID
    name: str
    scopes: list[str]
    expires_at: datetime | None


class AccessTokenRevoked(EventData, type="user.token_revoked", subject="user"):
    """A personal access token of the user was revoked, by the user or an ADMIN (the
    event's actor); it stopped working at once."""

    token_id: UUID
    name: str


# ---- two-factor authentication --------------------------------------------------------------
class MfaEnrollmentStarted(EventData, type="user.mfa_enrollment_started", subject="user"):
    """A TOTP secret was issued, pending until a first code confirms it."""


class MfaEnrolled(EventData, type="user.mfa_enrolled", subject="user"):
    """TOTP confirmed, ten recovery codes issued; the user's other sessions were revoked."""

    revoked_sessions: int


class MfaDisabled(EventData, type="user.mfa_disabled", subject="user"):
    """TOTP and recovery codes removed; the user's other sessions were revoked."""

    revoked_sessions: int


class MfaChallenged(EventData, type="auth.mfa_challenged", subject="user"):
    """The password of a login was right and a second factor is due (or, the tenant
    requiring 2FA, an enrollment): a challenge was issued instead of tokens."""

    enrollment_required: bool


class MfaSucceeded(EventData, type="auth.mfa_succeeded", subject="user"):
    """A login completed with a TOTP code; the session started with it."""

    session_id: UUID


class RecoveryCodeUsed(EventData, type="auth.recovery_code_used", subject="user"):
    """A login completed with one recovery code (spent); the session started with it."""

    remaining: int
    session_id: UUID


class MfaFailed(EventData, type="auth.mfa_failed", subject="user"):
    """A second factor was refused. ``step``: login, enroll, confirm or disable;
    ``reason``: bad_code, replayed_code, bad_recovery_code, bad_password or throttled."""

    step: str
    reason: str


# ---- sessions -------------------------------------------------------------------------------
class SessionRevoked(EventData, type="user.session_revoked", subject="user"):
    session_id: UUID


class SessionsRevoked(EventData, type="user.sessions_revoked", subject="user"):
    """``scope``: ``others`` (every session of the user but the caller's) or ``all``."""

    scope: str
    count: int
