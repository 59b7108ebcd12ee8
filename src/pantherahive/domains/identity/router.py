"""Identity's HTTP routes: thin — authenticate, call one service function, shape the answer."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status

from pantherahive.core.pagination import DEFAULT_LIMIT
from pantherahive.core.schemas import Page
from pantherahive.domains.identity import sessions as login_sessions
from pantherahive.domains.identity.auth import Authenticator
from pantherahive.domains.identity.mfa import Enrollment, IssuedChallenge, SecondFactor
from pantherahive.domains.identity.schemas import (
    EnrolledTokenPair,
    LoginRequest,
    MfaChallengeRead,
    MfaEnrollmentConfirm,
    MfaEnrollmentStart,
    MfaLoginRequest,
    PasswordChange,
    PasswordResetConfirm,
    PasswordResetRequest,
    RecoveryCodesRead,
    RefreshRequest,
    SessionRead,
    TenantCreate,
    TenantCreated,
    TenantRead,
    TokenPair,
    TokenRequest,
    TotpConfirm,
    TotpDisable,
    TotpEnrollmentRead,
    UserCreate,
    UserRead,
    UserStatus,
    UserUpdate,
)
from pantherahive.domains.identity.service import ClientInfo, IdentityService, IssuedTokens
from pantherahive.infra.http.listing import Cursor, Limit
from pantherahive.infra.http.paths import uuid_path
from pantherahive.infra.http.problems import problem_responses as _problems
from pantherahive.infra.http.unit_of_work import RequestSession
from pantherahive.infra.ratelimit import remember
from pantherahive.infra.security.dependency import CurrentAuth
from pantherahive.infra.security.principal import Role
from pantherahive.infra.security.scopes import Scope, scoped, session_only

UserId = Annotated[UUID, uuid_path("userId", "The user.")]
SessionId = Annotated[UUID, uuid_path("sessionId", "One of the caller's sessions.")]


async def anonymous_rate_limit(request: Request) -> None:
    """300/min per IP on the routes that need no token."""
    platform = request.app.state.platform
    ip = request.client.host if request.client else "unknown"
    state = await platform.rate_limits.hit(platform.anonymous_rate_item, "anon", ip)
    remember(request.scope, state)


async def no_store(response: Response) -> None:
    """Answers that carry tokens must not be cached by anything (RFC 6749 §5.1)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


async def _identity(request: Request) -> IdentityService:
    service: IdentityService = request.app.state.platform.identity
    return service


async def _authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.platform.authenticator
    return authenticator


async def _second_factor(request: Request) -> SecondFactor:
    second_factor: SecondFactor = request.app.state.platform.authenticator.second_factor
    return second_factor


async def _client(request: Request) -> ClientInfo:
    """The device a session starts or refreshes from: its address and user agent."""
    agent = request.headers.get("user-agent")
    return ClientInfo(
        ip=request.client.host[:64] if request.client else None,
        user_agent=agent[:400] if agent else None,
    )


Identity = Annotated[IdentityService, Depends(_identity)]
Auth = Annotated[Authenticator, Depends(_authenticator)]
TwoFactor = Annotated[SecondFactor, Depends(_second_factor)]
Client = Annotated[ClientInfo, Depends(_client)]

public = APIRouter(dependencies=[Depends(anonymous_rate_limit)])
users = APIRouter(
    prefix="/v1/users", tags=["users"],
    dependencies=[scoped(Scope.USERS_READ, Scope.USERS_WRITE)],
)


def _pair(tokens: IssuedTokens) -> TokenPair:
    return TokenPair(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
    )


@public.post(
    "/v1/tenants",
    status_code=status.HTTP_201_CREATED,
    tags=["tenants"],
    responses=_problems(403, 409, 422, 429),
    dependencies=[Depends(no_store)],
)
async def create_tenant(
    body: TenantCreate, session: RequestSession, identity: Identity, client: Client
) -> TenantCreated:
    """Sign up: create a tenant with its first ADMIN, and log that ADMIN in.

    Refused with 403 when sign-up is closed (`PANTHERAHIVE_SIGNUP_OPEN=false`); a taken
    slug is 409. When the platform requires email verification, `admin.email` is
    required, the ADMIN starts `PENDING_VERIFICATION` and the token fields are `null`:
    log in after verifying.
    """
    tenant, user, tokens = await identity.sign_up(session, body=body, client=client)
    return TenantCreated(
        tenant=TenantRead.model_validate(tenant),
        user=UserRead.model_validate(user),
        access_token=tokens.access_token if tokens else None,
        refresh_token=tokens.refresh_token if tokens else None,
        expires_in=tokens.expires_in if tokens else None,
    )


@public.post(
    "/v1/auth/login",
    tags=["auth"],
    responses=_problems(401, 403, 422, 429),
    dependencies=[Depends(no_store)],
)
async def login(
    body: LoginRequest, session: RequestSession, auth: Auth, client: Client
) -> TokenPair | MfaChallengeRead:
    """Exchange a username or email and password for an access and a refresh token.

    Wrong credentials, an unknown user and an inactive user all get the same 401. After 10
    failures in 5 minutes for one login or one IP, 429 with `Retry-After`.

    A user with two-factor authentication on gets no tokens yet: `{mfaRequired: true,
    enrollmentRequired: false, challenge, expiresIn}`, which `POST /v1/auth/login/2fa`
    completes with a code. In a tenant that requires 2FA, a user without it gets
    `enrollmentRequired: true`: enroll with the challenge (`POST
    /v1/auth/login/2fa/enrollment`, then `…/confirm`) to finish the login.
    """
    answer = await auth.login(
        session,
        tenant_slug=body.tenant,
        login=body.login,
        password=body.password,
        client=client,
    )
    if isinstance(answer, IssuedChallenge):
        return _challenge(answer)
    return _pair(answer)


def _challenge(issued: IssuedChallenge) -> MfaChallengeRead:
    return MfaChallengeRead(
        enrollment_required=issued.enrollment_required,
        challenge=issued.challenge,
        expires_in=issued.expires_in,
    )


def _enrollment(enrollment: Enrollment) -> TotpEnrollmentRead:
    return TotpEnrollmentRead(secret=enrollment.secret, otpauth_uri=enrollment.otpauth_uri)


@public.post(
    "/v1/auth/login/2fa",
    tags=["auth"],
    responses=_problems(401, 422, 429),
    dependencies=[Depends(no_store)],
)
async def login_second_factor(
    body: MfaLoginRequest, session: RequestSession, second_factor: TwoFactor, client: Client
) -> TokenPair:
    """Finish a login with its challenge and a TOTP `code`, or one `recoveryCode` (exactly
    one of the two): the token pair.

    A used, expired or unknown challenge, a wrong code, a code already accepted once and a
    used recovery code are all the same 401. Wrong codes count against the failed-login
    limit of the user: 429 with `Retry-After` when it is spent.
    """
    return _pair(await second_factor.complete_login(session, body=body, client=client))


@public.post(
    "/v1/auth/login/2fa/enrollment",
    status_code=status.HTTP_201_CREATED,
    tags=["auth"],
    responses=_problems(401, 409, 422, 429),
    dependencies=[Depends(no_store)],
)
async def start_login_enrollment(
    body: MfaEnrollmentStart, session: RequestSession, second_factor: TwoFactor
) -> TotpEnrollmentRead:
    """For a login answered `enrollmentRequired: true`: a new TOTP secret for the user's
    authenticator app (the challenge stays valid until confirmed or expired)."""
    return _enrollment(
        await second_factor.start_login_enrollment(session, challenge=body.challenge)
    )


@public.post(
    "/v1/auth/login/2fa/enrollment/confirm",
    tags=["auth"],
    responses=_problems(401, 409, 422, 429),
    dependencies=[Depends(no_store)],
)
async def confirm_login_enrollment(
    body: MfaEnrollmentConfirm, session: RequestSession, second_factor: TwoFactor,
    client: Client,
) -> EnrolledTokenPair:
    """Turn TOTP on with a first code and finish the login: the token pair and ten
    recovery codes, shown this once. Every older session of the user ends."""
    tokens, codes = await second_factor.confirm_login_enrollment(
        session, challenge=body.challenge, code=body.code, client=client
    )
    return EnrolledTokenPair(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
        recovery_codes=codes,
    )


@public.post(
    "/v1/auth/refresh",
    tags=["auth"],
    responses=_problems(401, 422, 429),
    dependencies=[Depends(no_store)],
)
async def refresh(
    body: RefreshRequest, session: RequestSession, auth: Auth, client: Client
) -> TokenPair:
    """Rotate a refresh token: a new pair comes back and the old refresh token is dead.

    Presenting an already-rotated token again is reuse: its whole family (every token
    descended from the same login) is revoked, 401. A token revoked by logout,
    deactivation or a password change is just a 401.
    """
    return _pair(await auth.refresh(session, body.refresh_token, client))


@public.post(
    "/v1/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["auth"],
    responses=_problems(401, 422, 429),
)
async def logout(body: RefreshRequest, session: RequestSession, auth: Auth) -> None:
    """Revoke the refresh token's family (this login on every device it was rotated to)."""
    await auth.logout(session, body.refresh_token)


@public.post(
    "/v1/auth/verify-email",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["auth"],
    responses=_problems(400, 422, 429),
)
async def verify_email(body: TokenRequest, session: RequestSession, auth: Auth) -> None:
    """Confirm an email address with the single-use token that was mailed; a pending user
    becomes ACTIVE."""
    await auth.verify_email(session, body.token)


@public.post(
    "/v1/auth/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["auth"],
    responses=_problems(422, 429),
)
async def request_password_reset(
    body: PasswordResetRequest, session: RequestSession, auth: Auth
) -> None:
    """Mail a single-use reset token if the account exists. Always 202, so the answer does
    not tell whether an account exists."""
    await auth.request_password_reset(session, tenant_slug=body.tenant, email=str(body.email))


@public.post(
    "/v1/auth/password-reset/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["auth"],
    responses=_problems(400, 422, 429),
)
async def confirm_password_reset(
    body: PasswordResetConfirm, session: RequestSession, auth: Auth
) -> None:
    """Set a new password with a reset token; every session of the user is revoked."""
    await auth.confirm_password_reset(session, token=body.token, new_password=body.new_password)


@users.get("/me", responses=_problems(401))
async def get_me(auth: CurrentAuth, session: RequestSession, identity: Identity) -> UserRead:
    """The caller's own user."""
    return UserRead.model_validate(dict(await identity.get_user(session, auth, auth.user_id)))


@users.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_problems(401, 422, 429),
    dependencies=[session_only()],
)
async def change_my_password(
    body: PasswordChange, auth: CurrentAuth, session: RequestSession, authenticator: Auth
) -> None:
    """Change the caller's password (the current one is required; a wrong one is 422 on
    `currentPassword`, and wrong ones count against the failed-login limit: 429 when it
    is spent). Every other session of the caller is revoked; this one goes on."""
    await authenticator.change_password(session, auth, body=body)


@users.get("", responses=_problems(401, 422))
async def list_users(
    auth: CurrentAuth,
    session: RequestSession,
    identity: Identity,
    role: Role | None = None,
    status: UserStatus | None = None,
    q: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[UserRead]:
    """The tenant's users, oldest first. `q` is a case-insensitive prefix of the username,
    first or last name, or email."""
    rows, next_cursor = await identity.list_users(
        session, auth, role=role, status=status, q=q, cursor=cursor, limit=limit
    )
    return Page[UserRead].of(rows, next_cursor)


@users.post("", status_code=status.HTTP_201_CREATED, responses=_problems(401, 403, 409, 422))
async def create_user(
    body: UserCreate, auth: CurrentAuth, session: RequestSession, identity: Identity
) -> UserRead:
    """Create a user (ADMIN only). Username and email are unique within the tenant (409).
    While email verification is required, `email` is too (422)."""
    return UserRead.model_validate(await identity.create_user(session, auth, body=body))


@users.get("/{userId:uuid}", responses=_problems(401, 404))
async def get_user(
    user_id: UserId, auth: CurrentAuth, session: RequestSession, identity: Identity
) -> UserRead:
    """One user of the caller's tenant; any other id is 404."""
    return UserRead.model_validate(dict(await identity.get_user(session, auth, user_id)))


@users.patch("/{userId:uuid}", responses=_problems(401, 403, 404, 409, 422))
async def update_user(
    user_id: UserId,
    body: UserUpdate,
    auth: CurrentAuth,
    session: RequestSession,
    identity: Identity,
) -> UserRead:
    """Partial update. An ADMIN may change anything; a user may change their own names and
    email. Sending `role` or `status` without being ADMIN is 403; demoting or deactivating
    the tenant's last active ADMIN is 409. A role change, or deactivation, takes effect on
    the user's tokens at once."""
    return UserRead.model_validate(await identity.update_user(session, auth, user_id, body=body))


@users.delete(
    "/{userId:uuid}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_problems(401, 403, 404, 409),
)
async def deactivate_user(
    user_id: UserId, auth: CurrentAuth, session: RequestSession, identity: Identity
) -> None:
    """Deactivate a user (ADMIN only): status INACTIVE, sessions and tokens revoked, history
    kept."""
    await identity.deactivate_user(session, auth, user_id)


# ---- two-factor authentication of the signed-in user -----------------------------------------
@users.post(
    "/me/2fa/totp",
    status_code=status.HTTP_201_CREATED,
    responses=_problems(401, 409),
    dependencies=[Depends(no_store)],
)
async def start_totp_enrollment(
    auth: CurrentAuth, session: RequestSession, second_factor: TwoFactor
) -> TotpEnrollmentRead:
    """A new TOTP secret and its `otpauth://` URI, pending until a first code confirms it
    (a pending one is replaced). 409 while TOTP is on."""
    return _enrollment(await second_factor.start_enrollment(session, auth))


@users.post(
    "/me/2fa/totp/confirm",
    responses=_problems(401, 409, 422, 429),
    dependencies=[Depends(no_store)],
)
async def confirm_totp_enrollment(
    body: TotpConfirm, auth: CurrentAuth, session: RequestSession, second_factor: TwoFactor
) -> RecoveryCodesRead:
    """Turn TOTP on with a first code: ten single-use recovery codes, shown this once.
    A wrong code is 422 on `code` (and counts against the failed-login limit: 429); no
    pending enrollment is 409. Every other session of the caller ends."""
    codes = await second_factor.confirm_enrollment(session, auth, code=body.code)
    return RecoveryCodesRead(recovery_codes=codes)


@users.delete(
    "/me/2fa/totp",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_problems(401, 404, 422, 429),
)
async def disable_totp(
    body: TotpDisable, auth: CurrentAuth, session: RequestSession, second_factor: TwoFactor
) -> None:
    """Turn TOTP off: the password and a current `code` (or, the device lost, one
    `recoveryCode`). A wrong one is 422 on its field and counts against the failed-login
    limit (429); TOTP not on is 404. Every other session of the caller ends."""
    await second_factor.disable(session, auth, body=body)


# ---- sessions --------------------------------------------------------------------------------
@users.get("/me/sessions", responses=_problems(401, 422))
async def list_my_sessions(
    auth: CurrentAuth, session: RequestSession, cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[SessionRead]:
    """The caller's live sessions (one per login), oldest first: device, address, when it
    began and was last used, and `current` for the one making this request."""
    items, next_cursor = await login_sessions.list_my_sessions(
        session, auth, cursor=cursor, limit=limit
    )
    return Page[SessionRead](items=items, next_cursor=next_cursor)


@users.delete(
    "/me/sessions/{sessionId:uuid}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_problems(401, 404),
)
async def revoke_my_session(
    session_id: SessionId, auth: CurrentAuth, session: RequestSession
) -> None:
    """End one of the caller's sessions: its refresh token and its access tokens stop
    working at once. Ending the current one is a logout."""
    await login_sessions.revoke_my_session(session, auth, session_id)


@users.delete(
    "/me/sessions",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_problems(401, 422),
)
async def revoke_my_sessions(
    auth: CurrentAuth,
    session: RequestSession,
    others: Annotated[
        bool, Query(description="true: every session but this one; false: all of them.")
    ] = False,
) -> None:
    """End the caller's sessions: with `others=true` all but the current one, without it
    every one (this one too: log out everywhere)."""
    await login_sessions.revoke_my_sessions(session, auth, others=others)


@users.delete(
    "/{userId:uuid}/sessions",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_problems(401, 403, 404),
)
async def revoke_user_sessions(
    user_id: UserId, auth: CurrentAuth, session: RequestSession
) -> None:
    """End every session of a user (ADMIN only): refresh and access tokens stop working at
    once. A user of another tenant is 404."""
    await login_sessions.revoke_user_sessions(session, auth, user_id)
