"""The relying party's side of OpenID Connect (authorization code flow with PKCE).

Discovery (``{issuer}/.well-known/openid-configuration``) and the issuer's key set are
cached per process; the key set is fetched again once when a token names a key it does
not hold (the issuer rotated its keys). Signatures are checked by joserfc against that
key set with asymmetric algorithms only (never ``none``, never a shared-secret HMAC), and
the ID token's claims by Authlib's ``CodeIDToken`` (``iss``, ``aud``, ``azp``, ``exp``,
``iat``, ``nonce``, ``at_hash``).

Every refusal is an :class:`OidcRejected` carrying the reason recorded in
``auth.login_failed`` (``oidc_…``); an issuer that cannot be reached is
:class:`ProviderUnreachable`.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import (
    ClaimError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from pantherahive.core.clock import now

# Clock skew tolerated on exp / iat / nbf between the issuer and this server.
LEEWAY_SECONDS = 60
# Asymmetric signatures only: an HMAC "signed" with the client secret proves nothing about
# the issuer, and "none" proves nothing at all.
SIGNING_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
METADATA_TTL_SECONDS = 3600.0
SCOPE = "openid email profile"


class OidcRejected(Exception):
    """The issuer's answer does not hold; ``reason`` goes into ``auth.login_failed``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProviderUnreachable(Exception):
    """Discovery, the key set or the token endpoint did not answer usably."""


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    token_auth_methods: tuple[str, ...]
    signing_algorithms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """What a valid ID token says about the person."""

    subject: str
    email: str | None
    email_verified: bool
    given_name: str | None
    family_name: str | None


class OidcClient:
    def __init__(self, *, timeout_seconds: float, allow_http: bool) -> None:
        self.timeout_seconds = timeout_seconds
        self.allow_http = allow_http
        self._metadata: dict[str, tuple[float, ProviderMetadata]] = {}
        self._key_sets: dict[str, KeySet] = {}

    # ---- discovery --------------------------------------------------------------------------
    async def metadata(self, issuer: str) -> ProviderMetadata:
        cached = self._metadata.get(issuer)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        document = await self._get_json(
            issuer.rstrip("/") + "/.well-known/openid-configuration"
        )
        try:
            metadata = ProviderMetadata(
                issuer=str(document["issuer"]),
                authorization_endpoint=self._url(document["authorization_endpoint"]),
                token_endpoint=self._url(document["token_endpoint"]),
                jwks_uri=self._url(document["jwks_uri"]),
                token_auth_methods=tuple(
                    document.get("token_endpoint_auth_methods_supported")
                    or ("client_secret_basic",)
                ),
                signing_algorithms=tuple(
                    alg
                    for alg in document.get("id_token_signing_alg_values_supported") or ("RS256",)
                    if alg in SIGNING_ALGORITHMS
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderUnreachable("the discovery document is incomplete") from exc
        # OpenID Connect Discovery §4.3: the document must be the configured issuer's own.
        if metadata.issuer != issuer:
            raise ProviderUnreachable("the discovery document names another issuer")
        self._metadata[issuer] = (time.monotonic() + METADATA_TTL_SECONDS, metadata)
        return metadata

    def _url(self, value: object) -> str:
        if not isinstance(value, str) or not (
            value.startswith("https://") or (self.allow_http and value.startswith("http://"))
        ):
            raise ValueError("an endpoint must be an https URL")
        return value

    # ---- the authorization request ----------------------------------------------------------
    @staticmethod
    def authorization_url(
        metadata: ProviderMetadata,
        *,
        client_id: str,
        redirect_uri: str,
        state: str,
        nonce: str,
        code_verifier: str,
    ) -> str:
        url: str = prepare_grant_uri(
            metadata.authorization_endpoint,
            client_id=client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=SCOPE,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(code_verifier),
            code_challenge_method="S256",
        )
        return url

    # ---- the token request ------------------------------------------------------------------
    async def exchange_code(
        self,
        metadata: ProviderMetadata,
        *,
        client_id: str,
        client_secret: str,
        code: str,
        code_verifier: str,
        redirect_uri: str,
    ) -> dict[str, Any]:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        headers = {"Accept": "application/json"}
        if "client_secret_basic" in metadata.token_auth_methods:
            # RFC 6749 §2.3.1: both halves form-encoded before the Basic encoding.
            pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form |= {"client_id": client_id, "client_secret": client_secret}
        try:
            async with self._http() as http:
                response = await http.post(metadata.token_endpoint, data=form, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ProviderUnreachable("the token endpoint did not answer") from exc
        if response.status_code >= 500:
            raise ProviderUnreachable(f"the token endpoint answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            raise OidcRejected("oidc_code_rejected")
        if not isinstance(body.get("id_token"), str):
            raise OidcRejected("oidc_no_id_token")
        return body

    # ---- the ID token -----------------------------------------------------------------------
    async def verify_id_token(
        self,
        metadata: ProviderMetadata,
        token_response: dict[str, Any],
        *,
        client_id: str,
        nonce: str,
    ) -> VerifiedIdentity:
        id_token = str(token_response["id_token"])
        registry = JWSRegistry(
            algorithms=list(metadata.signing_algorithms), strict_check_header=False
        )
        try:
            try:
                token = jwt.decode(id_token, await self._keys(metadata.jwks_uri), registry=registry)
            except InvalidKeyIdError:
                keys = await self._keys(metadata.jwks_uri, refresh=True)
                token = jwt.decode(id_token, keys, registry=registry)
        except JoseError as exc:
            raise OidcRejected("oidc_bad_signature") from exc
        except ValueError as exc:  # not a JWS at all
            raise OidcRejected("oidc_bad_signature") from exc
        claims = CodeIDToken(
            token.claims,
            token.header,
            {
                "iss": {"essential": True, "value": metadata.issuer},
                "aud": {"essential": True, "value": client_id},
                "sub": {"essential": True},
                "nonce": {"essential": True, "value": nonce},
            },
            {
                "nonce": nonce,
                "client_id": client_id,
                "access_token": token_response.get("access_token"),
            },
        )
        try:
            claims.validate(now=int(now().timestamp()), leeway=LEEWAY_SECONDS)
        except ExpiredTokenError as exc:
            raise OidcRejected("oidc_token_expired") from exc
        except MissingClaimError as exc:
            raise OidcRejected("oidc_missing_claim") from exc
        except ClaimError as exc:
            raise OidcRejected(f"oidc_invalid_{exc.claim}"[:60]) from exc
        if len(str(claims["sub"])) > 255:  # OpenID Connect Core §2: at most 255 characters
            raise OidcRejected("oidc_invalid_sub")
        email = claims.get("email")
        verified = claims.get("email_verified")
        return VerifiedIdentity(
            subject=str(claims["sub"]),
            email=email if isinstance(email, str) and email else None,
            # Some issuers send the string "true"; anything else is not a verification.
            email_verified=verified is True or verified == "true",
            given_name=_text(claims.get("given_name")),
            family_name=_text(claims.get("family_name")),
        )

    async def _keys(self, jwks_uri: str, *, refresh: bool = False) -> KeySet:
        if not refresh and jwks_uri in self._key_sets:
            return self._key_sets[jwks_uri]
        document = await self._get_json(jwks_uri)
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, KeyError, TypeError, ValueError) as exc:
            raise ProviderUnreachable("the issuer's key set cannot be read") from exc
        self._key_sets[jwks_uri] = keys
        return keys

    # ---- HTTP -------------------------------------------------------------------------------
    def _http(self) -> httpx.AsyncClient:
        # No redirects: every URL used is one the issuer published, and following a redirect
        # would let it point this server anywhere.
        return httpx.AsyncClient(timeout=self.timeout_seconds, follow_redirects=False)

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._http() as http:
                response = await http.get(url, headers={"Accept": "application/json"})
            body = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            raise ProviderUnreachable(f"{url} did not answer usably") from exc
        if not isinstance(body, dict):
            raise ProviderUnreachable(f"{url} answered {response.status_code}")
        return body


def _text(value: object, limit: int = 100) -> str | None:
    return value.strip()[:limit] or None if isinstance(value, str) else None
