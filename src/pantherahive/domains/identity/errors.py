"""Identity's domain errors."""

from __future__ import annotations

from pantherahive.core.errors import (
    BadRequest,
    Conflict,
    FieldError,
    Forbidden,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
)


class InvalidCredentials(Unauthenticated):
    slug = "invalid-credentials"
    commit = True  # keeps the auth.login_failed event

    def __init__(self) -> None:
        super().__init__("The tenant, login or password is wrong.")


class WrongCurrentPassword(ValidationFailed):
    """A password change whose current password is wrong: the field is wrong, the session
    is fine (not a 401, which clients read as "log in again"). Commits its
    auth.password_change_failed event, a security event like a failed login."""

    commit = True

    def __init__(self) -> None:
        super().__init__(
            "The current password is not correct.",
            errors=[FieldError("currentPassword", "is not your current password")],
        )


class GuessThrottled(RateLimited):
    """The 429 of a password guess (a login, a password change) refused by the failure
    limit; commits the failure event recorded for it."""

    commit = True

    @classmethod
    def of(cls, refused: RateLimited) -> GuessThrottled:
        throttled = cls(1, refused.detail)
        throttled.headers = dict(refused.headers)
        return throttled


class RefreshTokenRejected(Unauthenticated):
    slug = "invalid-refresh-token"
    commit = True  # keeps the family revocation and the auth.refresh_reused event

    def __init__(self) -> None:
        super().__init__("The refresh token is not valid.")


class EmailNotVerified(Forbidden):
    slug = "email-not-verified"
    commit = False

    def __init__(self) -> None:
        super().__init__("Verify your email address before logging in.")


class SignupClosed(Forbidden):
    slug = "signup-closed"
    commit = False

    def __init__(self) -> None:
        super().__init__("Sign-up of new tenants is closed on this platform.")


class InvalidActionToken(BadRequest):
    slug = "invalid-token"

    def __init__(self) -> None:
        super().__init__("The token is unknown, used or expired.")


class DuplicateUser(Conflict):
    slug = "duplicate-user"


class LastAdmin(Conflict):
    slug = "last-admin"

    def __init__(self) -> None:
        super().__init__("The tenant's last active ADMIN cannot be demoted or deactivated.")


class InvalidMfaCode(Unauthenticated):
    """A login's challenge, code or recovery code refused: used, expired, replayed or
    wrong alike. Commits its auth.mfa_failed event."""

    slug = "invalid-mfa"
    commit = True

    def __init__(self) -> None:
        super().__init__("The challenge or the code is not valid.")


class WrongSecondFactor(ValidationFailed):
    """A signed-in user's TOTP code, recovery code or password is wrong (2FA confirm or
    removal): the field is wrong, the session is fine. Commits its auth.mfa_failed."""

    commit = True

    def __init__(self, field: str, message: str) -> None:
        super().__init__(
            "The second factor or password is not correct.",
            errors=[FieldError(field, message)],
        )


class TotpAlreadyEnabled(Conflict):
    slug = "mfa-already-enabled"

    def __init__(self) -> None:
        super().__init__("Two-factor authentication is on already: turn it off first.")


class NoPendingEnrollment(Conflict):
    slug = "no-pending-enrollment"

    def __init__(self) -> None:
        super().__init__("There is no TOTP enrollment to confirm: start one first.")
