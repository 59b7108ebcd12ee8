"""The wire shapes of ``/v1/tenant/sso``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from pantherahive.core.schemas import ApiModel, RequestModel

# An absolute http(s) URL without query or fragment. https is required unless the platform
# allows http issuers (development): a rule of the server's settings, checked by the service.
Issuer = Annotated[
    str,
    StringConstraints(max_length=500, pattern=r"^https?://[A-Za-z0-9.\-\[\]:]+(/[^\s?#]*)?$"),
]
AppUrl = Annotated[
    str,
    StringConstraints(max_length=2000, pattern=r"^https?://[A-Za-z0-9.\-\[\]:]+(/[^\s#]*)?$"),
]
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^\S+$")]
ClientSecret = Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class SsoSettingsRead(ApiModel):
    """The tenant's SSO settings. The client secret is never shown: ``clientSecretSet``
    says whether one is stored."""

    issuer: str | None
    client_id: str | None
    client_secret_set: bool
    enabled: bool
    jit_provisioning: bool
    require_2fa: bool = Field(alias="require2fa")
    app_redirect_url: str | None
    redirect_uri: str = Field(
        description="The callback to register at the issuer as this client's redirect URI."
    )
    updated_at: datetime | None


class SsoSettingsUpdate(RequestModel):
    """The whole settings document. ``clientSecret`` is write-only: left out, the stored
    one is kept (it is required the first time)."""

    issuer: Issuer = Field(description="The OpenID Provider's issuer identifier (exact).")
    client_id: ClientId
    client_secret: ClientSecret | None = None
    enabled: bool
    jit_provisioning: bool = Field(
        description="Create a MEMBER on the first sign-in of an unknown, verified email."
    )
    require_2fa: bool = Field(alias="require2fa")
    app_redirect_url: AppUrl | None = Field(
        default=None,
        description=(
            "Where the callback sends the browser with the tokens in the URL fragment; "
            "unset, the callback answers the token pair as JSON."
        ),
    )
