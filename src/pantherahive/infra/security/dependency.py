"""The authentication dependency every authenticated route of every service uses.

It lives in infrastructure so that no service imports another one to authenticate: the
principal is resolved through :class:`PrincipalResolver`, a protocol the composition root
(``main.py``) satisfies with identity's authenticator and wires on ``app.state`` with
:func:`install_authentication`. Infrastructure knows no service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import RateLimitItem
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.errors import Unauthenticated
from pantherahive.infra.http.unit_of_work import request_session
from pantherahive.infra.ratelimit import RateLimits, remember
from pantherahive.infra.security.authz import deny
from pantherahive.infra.security.principal import AuthContext
from pantherahive.infra.security.scopes import required_scope, satisfies

__all__ = [
    "Authentication",
    "CurrentAuth",
    "PrincipalResolver",
    "install_authentication",
    "require_auth",
]

_STATE_KEY = "authentication"
_bearer = HTTPBearer(
    auto_error=False,
    description="An access token from POST /v1/auth/login, or a personal access token "
    "(`ph_pat_…`, POST /v1/users/me/tokens) limited to the scope each operation names.",
)


class PrincipalResolver(Protocol):
    async def principal(self, session: AsyncSession, access_token: str) -> AuthContext:
        """The live principal of an access token (with its scopes when it is a personal
        access token); raise ``Unauthenticated`` otherwise."""
        ...


@dataclass(frozen=True, slots=True)
class Authentication:
    """What ``require_auth`` needs from the process: who a token is, and the per-user
    request budget."""

    principals: PrincipalResolver
    rate_limits: RateLimits
    user_rate_item: RateLimitItem


def install_authentication(app: FastAPI, authentication: Authentication) -> None:
    setattr(app.state, _STATE_KEY, authentication)


async def require_auth(
    request: Request,
    session: Annotated[AsyncSession, Depends(request_session)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AuthContext:
    """The one producer of :class:`AuthContext` for HTTP requests."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("Send an access token: Authorization: Bearer <token>.")
    wired = getattr(request.app.state, _STATE_KEY, None)
    if not isinstance(wired, Authentication):
        raise RuntimeError("install_authentication() was not called for this app")
    auth = await wired.principals.principal(session, credentials.credentials)
    # The gateway puts the RateLimit-* headers on whatever response goes out, errors too.
    # A personal access token spends its user's budget, like any of the user's sessions.
    remember(request.scope, await wired.rate_limits.hit(wired.user_rate_item, "user",
                                                        str(auth.user_id)))
    if auth.scopes is not None:
        await _require_scope(request, session, auth, auth.scopes)
    return auth


async def _require_scope(
    request: Request, session: AsyncSession, auth: AuthContext, scopes: frozenset[str]
) -> None:
    """Refuse a personal access token the route's scope (``infra.security.scopes``) does
    not cover; a route that declares none is closed to every token."""
    method = request.method
    route = request.scope.get("route")
    required = required_scope(route, method)
    if required is not None and satisfies(scopes, required):
        return
    action = f"{method} {getattr(route, 'path_format', request.url.path)}"
    if required is None:
        detail = "Personal access tokens cannot be used here: sign in for a session token."
    else:
        detail = f"This personal access token lacks the scope {required.value}."
    raise await deny(
        session, auth, action, subject_type="access_token", subject_id=auth.token_id,
        detail=detail, data={"missingScope": required.value if required else None},
    )


CurrentAuth = Annotated[AuthContext, Depends(require_auth)]
