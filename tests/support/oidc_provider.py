"""A real OpenID Provider for the tests, served by uvicorn on a free loopback port.

It speaks the authorization code flow with PKCE as an identity provider does: discovery,
its key set, ``/authorize`` (which approves the configured person at once and sends the
browser back with a code) and ``/token`` (client authentication, single-use code, the
redirect URI and the PKCE verifier checked) answering an RS256-signed ID token made with
joserfc. Tests then misbehave on purpose: :attr:`OidcProvider.tamper` overrides claims of
the next ID tokens (a wrong nonce, audience, issuer, an expiry in the past), and
:attr:`OidcProvider.signing_key` signs them with a key the provider never published (a
forged token).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.support.servers import free_port


def new_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"})


@dataclass
class Person:
    """Who is signed in at the provider."""

    sub: str
    email: str | None
    email_verified: bool | str | None = True
    given_name: str | None = "Ada"
    family_name: str | None = "Lovelace"


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    person: Person


@dataclass
class OidcProvider:
    client_id: str = "pantherahive-test"
    client_secret: str = field(default_factory=lambda: "s3cr3t-" + secrets.token_urlsafe(12))
    person: Person = field(default_factory=lambda: Person("sub-1", "ada@idp.example"))
    tamper: dict[str, Any] = field(default_factory=dict)
    published: list[RSAKey] = field(default_factory=lambda: [new_key("k1")])
    signing_key: RSAKey | None = None  # None: the first published key
    issuer: str = ""
    token_requests: int = 0
    jwks_requests: int = 0
    _codes: dict[str, _Grant] = field(default_factory=dict)

    def reset(self) -> None:
        self.tamper = {}
        self.signing_key = None

    # ---- endpoints --------------------------------------------------------------------------
    async def discovery(self, request: Request) -> Response:
        return JSONResponse({
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
        })

    async def jwks(self, request: Request) -> Response:
        self.jwks_requests += 1
        return JSONResponse(KeySet(list(self.published)).as_dict(private=False))

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if (
            q.get("client_id") != self.client_id
            or q.get("response_type") != "code"
            or q.get("code_challenge_method") != "S256"
            or not q.get("code_challenge")
            or not q.get("redirect_uri")
            or "openid" not in (q.get("scope") or "").split()
        ):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Grant(
            self.client_id, q["redirect_uri"], q["code_challenge"], q.get("nonce"), self.person
        )
        back = urlencode({"code": code, "state": q.get("state", "")})
        return RedirectResponse(f"{q['redirect_uri']}?{back}", status_code=302)

    async def token(self, request: Request) -> Response:
        self.token_requests += 1
        # parsed by hand: Starlette's form parser needs python-multipart
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return _error("invalid_client", 401)
        client_id, _, secret = base64.b64decode(credentials).decode().partition(":")
        if (unquote(client_id), unquote(secret)) != (self.client_id, self.client_secret):
            return _error("invalid_client", 401)
        grant = self._codes.pop(form.get("code", ""), None)
        if grant is None or form.get("grant_type") != "authorization_code":
            return _error("invalid_grant")
        if form.get("redirect_uri") != grant.redirect_uri:
            return _error("invalid_grant")
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()
        ).rstrip(b"=").decode()
        if challenge != grant.code_challenge:
            return _error("invalid_grant")
        return JSONResponse({
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": self.id_token(grant),
        }, headers={"Cache-Control": "no-store"})

    def id_token(self, grant: _Grant) -> str:
        now = int(time.time())
        person = grant.person
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": person.sub,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            "email": person.email,
            "email_verified": person.email_verified,
            "given_name": person.given_name,
            "family_name": person.family_name,
        }
        claims.update(self.tamper)
        claims = {k: v for k, v in claims.items() if v is not None}
        key = self.signing_key or self.published[0]
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/.well-known/openid-configuration", self.discovery),
            Route("/jwks", self.jwks),
            Route("/authorize", self.authorize),
            Route("/token", self.token, methods=["POST"]),
        ])


def _error(code: str, status: int = 400) -> Response:
    return JSONResponse({"error": code}, status_code=status)


@asynccontextmanager
async def running_provider() -> AsyncIterator[OidcProvider]:
    """The provider on a free loopback port, in this event loop."""
    provider = OidcProvider()
    port = free_port()
    provider.issuer = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(provider.app(), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield provider
    finally:
        server.should_exit = True
        await task
