"""Single sign-on's HTTP routes: the tenant's settings, and the two legs of the browser
sign-in."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import RedirectResponse

from pantherahive.domains.identity.router import anonymous_rate_limit, no_store
from pantherahive.domains.identity.schemas import TokenPair
from pantherahive.domains.identity.sso.schemas import SsoSettingsRead, SsoSettingsUpdate
from pantherahive.domains.identity.sso.service import SingleSignOn, browser_cookie_name
from pantherahive.infra.http.problems import problem_responses as _problems
from pantherahive.infra.http.unit_of_work import RequestSession
from pantherahive.infra.security.dependency import CurrentAuth


async def _sso(request: Request) -> SingleSignOn:
    service: SingleSignOn = request.app.state.platform.sso
    return service


Sso = Annotated[SingleSignOn, Depends(_sso)]
TenantSlug = Annotated[
    str, Path(alias="tenant", min_length=1, max_length=63, description="The tenant's slug.")
]

settings = APIRouter(prefix="/v1/tenant/sso", tags=["tenant"])
sign_in = APIRouter(
    prefix="/v1/auth/oidc", tags=["auth"], dependencies=[Depends(anonymous_rate_limit)]
)
_REDIRECT = {"description": "Redirect (see `Location`)."}


@settings.get("", responses=_problems(401, 403))
async def get_sso_settings(auth: CurrentAuth, session: RequestSession, sso: Sso) -> SsoSettingsRead:
    """The tenant's single sign-on settings (ADMIN only). The client secret is never shown;
    `redirectUri` is the callback to register at the identity provider."""
    return await sso.get_settings(session, auth)


@settings.put("", responses=_problems(401, 403, 422))
async def put_sso_settings(
    body: SsoSettingsUpdate, auth: CurrentAuth, session: RequestSession, sso: Sso
) -> SsoSettingsRead:
    """Replace the tenant's single sign-on settings (ADMIN only). `clientSecret` is
    write-only: left out, the stored one is kept (the first configuration needs it, else
    422). The issuer must be https. `require2fa` is the tenant's two-factor requirement."""
    return await sso.put_settings(session, auth, body=body)


@sign_in.get(
    "/{tenant}/start",
    status_code=status.HTTP_302_FOUND,
    response_class=RedirectResponse,
    responses={302: _REDIRECT, **_problems(404, 422, 429, 503)},
)
async def start_sign_in(tenant_slug: TenantSlug, session: RequestSession, sso: Sso) -> Response:
    """Start a single sign-on: 302 to the tenant's identity provider with an authorization
    code request (PKCE S256, `state`, `nonce`), and a cookie that binds the sign-in to this
    browser (the callback needs it back). 404 when the tenant has no enabled SSO; 503 when
    its identity provider cannot be reached."""
    started = await sso.start(session, tenant_slug=tenant_slug)
    response = RedirectResponse(
        started.authorization_url, status_code=status.HTTP_302_FOUND, headers=_NO_STORE
    )
    response.set_cookie(
        started.cookie_name,
        started.cookie_value,
        max_age=started.cookie_max_age,
        path=started.cookie_path,
        secure=started.cookie_secure,
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back, not on subrequests
    )
    return response


@sign_in.get(
    "/{tenant}/callback",
    response_model=TokenPair,
    responses={302: _REDIRECT, **_problems(401, 403, 404, 409, 422, 429, 503)},
    dependencies=[Depends(no_store)],
)
async def finish_sign_in(
    tenant_slug: TenantSlug,
    request: Request,
    response: Response,
    session: RequestSession,
    sso: Sso,
    state: Annotated[str, Query(min_length=1, max_length=512)],
    code: Annotated[str | None, Query(max_length=4096)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
) -> TokenPair | Response:
    """Where the identity provider sends the browser back. The state is single-use and
    belongs to this tenant and to the browser that started the sign-in (its cookie); the
    ID token's signature (the issuer's keys), issuer, audience, expiry and nonce are
    checked. The user is the tenant's user with the token's verified email, or a new
    MEMBER when just-in-time provisioning is on (else 403). Answers the token pair, or a
    302 to the tenant's `appRedirectUrl` with the tokens in the URL fragment. Any failed
    check is 401 (a fresh `start` is needed)."""
    cookie = browser_cookie_name(state)
    done = await sso.callback(
        session, tenant_slug=tenant_slug, state=state, code=code, error=error,
        browser=request.cookies.get(cookie),
    )
    pair = TokenPair(
        access_token=done.tokens.access_token,
        refresh_token=done.tokens.refresh_token,
        expires_in=done.tokens.expires_in,
    )
    answer: Response = response
    if done.app_redirect_url is not None:
        fragment = urlencode(pair.model_dump(by_alias=True))
        answer = RedirectResponse(
            f"{done.app_redirect_url}#{fragment}",
            status_code=status.HTTP_302_FOUND,
            headers=_NO_STORE,
        )
    answer.delete_cookie(cookie, path=urlsplit(sso.redirect_uri(tenant_slug)).path)  # done
    return pair if answer is response else answer


_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
