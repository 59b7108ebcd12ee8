"""Identity's wire schemas (the seed's User / NewUser / UpdateUser and the auth bodies)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import ConfigDict, EmailStr, Field, StringConstraints, model_validator

from pantherahive.core.schemas import ApiModel, NotNull, RequestModel
from pantherahive.infra.security.principal import Role


class UserStatus(StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    PENDING_VERIFICATION = "PENDING_VERIFICATION"


Username = Annotated[
    str, StringConstraints(min_length=3, max_length=50, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=64)]
PersonName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{3,63}$")]


class UserRead(ApiModel):
    id: UUID
    username: str
    email: str | None
    first_name: str | None
    last_name: str | None
    role: Role
    status: UserStatus
    created_at: datetime
    updated_at: datetime


class UserCreate(RequestModel):
    """NewUser."""

    username: Username
    password: Password
    role: Role
    email: EmailStr | None = None
    first_name: PersonName | None = None
    last_name: PersonName | None = None


class UserUpdate(RequestModel):
    """UpdateUser: every field optional; ``null`` clears email and names (role and status
    may be left out, not nulled)."""

    email: EmailStr | None = None
    first_name: PersonName | None = None
    last_name: PersonName | None = None
    role: Annotated[Role | None, NotNull] = None
    status: Annotated[Literal[UserStatus.ACTIVE, UserStatus.INACTIVE] | None, NotNull] = None


class PasswordChange(RequestModel):
    current_password: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    new_password: Password


class TenantAdminCreate(UserCreate):
    # The contract: a tenant's first user's role, if sent, must be ADMIN.
    role: Literal[Role.ADMIN] = Role.ADMIN


class TenantCreate(RequestModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    slug: Slug
    admin: TenantAdminCreate


class TenantRead(ApiModel):
    id: UUID
    name: str
    slug: str
    created_at: datetime


class TokenPair(ApiModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")


_PENDING = (
    " null when the platform requires email verification: the ADMIN is then"
    " PENDING_VERIFICATION and logs in after verifying."
)


class TenantCreated(ApiModel):
    tenant: TenantRead
    user: UserRead
    access_token: str | None = Field(description="The ADMIN's access token;" + _PENDING)
    refresh_token: str | None = Field(description="The ADMIN's refresh token;" + _PENDING)
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int | None = Field(
        description="Seconds until the access token expires;" + _PENDING
    )


class LoginRequest(RequestModel):
    tenant: Annotated[str, StringConstraints(min_length=1, max_length=63)]
    login: Annotated[str, StringConstraints(min_length=1, max_length=254)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class RefreshRequest(RequestModel):
    # Any string: whatever is not a live refresh token of this platform (garbage, an access
    # token, an over-long string, "") is the contract's 401, not a 422.
    refresh_token: str = Field(
        description="The refresh token; anything that is not a live one is answered 401."
    )


class TokenRequest(RequestModel):
    token: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class PasswordResetRequest(RequestModel):
    tenant: Annotated[str, StringConstraints(min_length=1, max_length=63)]
    email: EmailStr


class PasswordResetConfirm(RequestModel):
    token: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    new_password: Password


# ---- two-factor authentication (TOTP) ------------------------------------------------------
TotpCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
RecoveryCodeText = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class MfaChallengeRead(ApiModel):
    """The answer to a correct password when a second factor is due: no tokens yet."""

    mfa_required: Literal[True] = True
    enrollment_required: bool = Field(
        description="True when the tenant requires 2FA and the user has none yet: enroll "
        "with POST /v1/auth/login/2fa/enrollment, then confirm, to finish the login."
    )
    challenge: str = Field(description="Single-use; send it with the code.")
    expires_in: int = Field(description="Seconds until the challenge expires.")


class TotpEnrollmentRead(ApiModel):
    secret: str = Field(description="Base32 TOTP secret (RFC 6238, SHA-1, 6 digits, 30 s).")
    otpauth_uri: str = Field(description="The secret as an otpauth:// URI (for a QR code).")


class TotpConfirm(RequestModel):
    code: TotpCode


class RecoveryCodesRead(ApiModel):
    recovery_codes: list[str] = Field(
        description="Ten single-use codes, shown this once: each replaces a TOTP code once."
    )


class _SecondFactor(RequestModel):
    """A current TOTP code or, for a lost device, one recovery code: exactly one."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["code"], "properties": {"code": {"type": "string"}}},
                {"required": ["recoveryCode"],
                 "properties": {"recoveryCode": {"type": "string"}}},
            ]
        }
    )

    code: TotpCode | None = None
    recovery_code: RecoveryCodeText | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> _SecondFactor:
        if (self.code is None) == (self.recovery_code is None):
            raise ValueError("send exactly one of code and recoveryCode")
        return self


class TotpDisable(_SecondFactor):
    password: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class MfaLoginRequest(_SecondFactor):
    challenge: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class MfaEnrollmentStart(RequestModel):
    challenge: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class MfaEnrollmentConfirm(RequestModel):
    challenge: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    code: TotpCode


class EnrolledTokenPair(TokenPair):
    recovery_codes: list[str] = Field(
        description="Ten single-use codes, shown this once: each replaces a TOTP code once."
    )


# ---- sessions -------------------------------------------------------------------------------
class SessionRead(ApiModel):
    id: UUID
    user_agent: str | None
    ip: str | None
    created_at: datetime
    last_used_at: datetime = Field(
        description="When the session last logged in or refreshed its tokens (access tokens "
        "live at most 15 minutes, so an active session shows a recent time)."
    )
    current: bool = Field(description="The session of the access token making this request.")
