"""Single sign-on's errors: a refused sign-in keeps its ``auth.login_failed`` event."""

from __future__ import annotations

from pantherahive.core.errors import (
    FieldError,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unauthenticated,
    ValidationFailed,
)


class SsoNotAvailable(NotFound):
    slug = "sso-not-available"

    def __init__(self) -> None:
        super().__init__("Single sign-on is not enabled for this tenant.")


class SsoSignInRefused(Unauthenticated):
    """The issuer's answer did not hold (state, code, token, nonce, …): the sign-in fails
    with nothing said about which check it failed; the audit trail has the reason."""

    slug = "sso-sign-in-failed"
    commit = True

    def __init__(self) -> None:
        super().__init__("The single sign-on could not be completed; start it again.")


class SsoAccountNotProvisioned(Forbidden):
    """A verified identity with no account here, and the tenant creates none on sign-in."""

    slug = "sso-no-account"
    commit = True

    def __init__(self) -> None:
        super().__init__(
            "No account of this tenant matches your identity; ask an ADMIN to create one."
        )


class IssuerUnavailable(ServiceUnavailable):
    slug = "sso-issuer-unavailable"

    def __init__(self) -> None:
        super().__init__("The identity provider cannot be reached; try again shortly.", 30)


class InsecureIssuer(ValidationFailed):
    def __init__(self, field: str) -> None:
        super().__init__(
            "Identity provider URLs must use https.",
            errors=[FieldError(field, "must be an https:// URL")],
        )


class ClientSecretRequired(ValidationFailed):
    def __init__(self) -> None:
        super().__init__(
            "A client secret is required when SSO is first configured.",
            errors=[FieldError("clientSecret", "required: none is stored yet")],
        )
