"""``GET /.well-known/jwks.json``: the public keys that verify access tokens (RFC 7517),
so that any process or service checks a token without holding a private key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter, Response

from pantherahive.core import clock
from pantherahive.core.schemas import ApiModel
from pantherahive.infra.security.signing_keys import KeyRing

# Verifiers may keep the key set this long; the rotation procedure (docs/identity.md,
# "Signing keys") waits at least as long between adding a key and activating it.
JWKS_MAX_AGE_SECONDS = 300


class Jwk(ApiModel):
    """An Ed25519 public key (RFC 8037)."""

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    kid: str
    use: Literal["sig"]
    alg: Literal["EdDSA"]


class JwkSet(ApiModel):
    keys: list[Jwk]


def jwks_router(key_ring: Callable[[], KeyRing]) -> APIRouter:
    router = APIRouter(tags=["auth"])

    @router.get("/.well-known/jwks.json", response_model=JwkSet)
    async def jwks(response: Response) -> JwkSet:
        """The public keys of access tokens, each with the `kid` that tokens carry in their
        header: the active key, keys added for an upcoming rotation, and retired keys until
        the tokens they signed have expired. No private key material (`d`) ever appears.
        Cacheable for five minutes; no authentication."""
        response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
        keys = key_ring().current().jwks(clock.now())
        return JwkSet(keys=[Jwk.model_validate(key) for key in keys])

    return router
