"""Access tokens (JWT, EdDSA only, the key named by ``kid``), opaque single-purpose tokens
and personal access tokens.

Access tokens are signed with the key ring's active Ed25519 key (infra/security/
signing_keys.py) and verified with whichever published key their ``kid`` names, so any
process or service holding the public keys (``/.well-known/jwks.json``) can check them.

Opaque tokens (refresh, email verification, password reset, personal) are random, carry their
tenant in clear so the server knows where to look, and are stored only as SHA-256 hashes.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from uuid import UUID, uuid4

import jwt

from pantherahive.core import clock
from pantherahive.core.errors import Unauthenticated
from pantherahive.infra.security.signing_keys import KeyRing, KeySet

ALGORITHM = "EdDSA"
LEEWAY_SECONDS = 5
# Verified tokens remembered per process: the same access token arrives with every request
# of a session, and checking its signature and claims costs ~100 µs of CPU each time.
_VERIFIED_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: UUID
    tenant_id: UUID
    token_version: int
    expires_at: int
    # The login session (refresh-token family) the token was issued for; None for a token
    # issued without one, which the principal check refuses.
    session_id: UUID | None = None


class AccessTokens:
    def __init__(self, keys: KeyRing, *, issuer: str, audience: str, ttl_seconds: int) -> None:
        self.keys = keys
        self._issuer = issuer
        self._audience = audience
        self.ttl_seconds = ttl_seconds
        self._verified: dict[str, AccessClaims] = {}
        self._generation = keys.generation

    def issue(
        self,
        *,
        user_id: UUID,
        tenant_id: UUID,
        token_version: int,
        session_id: UUID | None = None,
    ) -> str:
        kid, signer = self.keys.signer()
        # Wall-clock seconds, not core.clock: PyJWT checks iat/nbf/exp against the wall
        # clock, so a token stamped by a frozen test clock would not verify.
        now = int(time.time())
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user_id),
            "tid": str(tenant_id),
            "ver": token_version,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_seconds,
            "jti": uuid4().hex,
        }
        if session_id is not None:
            claims["sid"] = str(session_id)
        return jwt.encode(claims, signer, algorithm=ALGORITHM, headers={"kid": kid})

    def verify(self, token: str) -> AccessClaims:
        """The token's claims, if its signature (by a key of the ring), algorithm, issuer,
        audience and lifetime hold. A token verified before is not decoded again, but its
        expiry is still checked on every call (the same bytes verify the same way; only time
        changes); a change of the key ring empties the cache (a pruned key's tokens stop)."""
        keys = self.keys.current()
        if self._generation != self.keys.generation:
            self._verified.clear()
            self._generation = self.keys.generation
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at + LEEWAY_SECONDS <= time.time():
                del self._verified[token]
                raise Unauthenticated("The access token has expired.")
            return known
        claims = self._decode(token, keys)
        if len(self._verified) >= _VERIFIED_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = claims
        return claims

    def _decode(self, token: str, keys: KeySet) -> AccessClaims:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            if not isinstance(kid, str):
                raise jwt.InvalidTokenError("no kid")
            key = keys.public_key(kid, clock.now())
            if key is None:
                # perhaps a key added a moment ago that this process has not read yet
                key = self.keys.refresh().public_key(kid, clock.now())
            if key is None:
                raise jwt.InvalidTokenError("unknown kid")
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
                leeway=LEEWAY_SECONDS,
            )
            return AccessClaims(
                user_id=UUID(claims["sub"]),
                tenant_id=UUID(claims["tid"]),
                token_version=int(claims["ver"]),
                expires_at=int(claims["exp"]),
                session_id=UUID(claims["sid"]) if "sid" in claims else None,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("The access token has expired.") from exc
        except (jwt.InvalidTokenError, KeyError, ValueError, TypeError) as exc:
            raise Unauthenticated("The access token is not valid.") from exc


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_opaque_token(prefix: str, tenant_id: UUID) -> tuple[str, bytes]:
    token = f"{prefix}_{tenant_id.hex}_{secrets.token_urlsafe(32)}"
    return token, hash_token(token)


def parse_opaque_token(prefix: str, token: str) -> tuple[UUID, bytes] | None:
    """The tenant and hash of a well-formed token of this kind, or None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != prefix or len(token) > 200:
        return None
    try:
        tenant_id = UUID(hex=parts[1])
    except ValueError:
        return None
    return tenant_id, hash_token(token)


PERSONAL_PREFIX = "ph_pat_"
_PERSONAL_SECRET_HEX = 40
_PERSONAL_SHOWN_HEX = 8


@dataclass(frozen=True, slots=True)
class PersonalToken:
    """A new personal access token: ``ph_pat_<40 hex secret>_<tenant hex>``. The fixed
    prefix and shape let secret scanners recognise a leaked one; ``prefix`` (the first
    characters) is kept in clear so its owner can tell tokens apart, the rest only hashed."""

    token: str
    token_hash: bytes
    prefix: str


def new_personal_token(tenant_id: UUID) -> PersonalToken:
    token = f"{PERSONAL_PREFIX}{secrets.token_hex(_PERSONAL_SECRET_HEX // 2)}_{tenant_id.hex}"
    return PersonalToken(
        token, hash_token(token), token[: len(PERSONAL_PREFIX) + _PERSONAL_SHOWN_HEX]
    )


def parse_personal_token(token: str) -> tuple[UUID, bytes] | None:
    """The tenant and hash of a well-formed personal access token, or None."""
    if not token.startswith(PERSONAL_PREFIX) or len(token) > 200:
        return None
    secret, _, tenant = token[len(PERSONAL_PREFIX):].partition("_")
    if len(secret) != _PERSONAL_SECRET_HEX or len(tenant) != 32:
        return None
    try:
        tenant_id = UUID(hex=tenant)
    except ValueError:
        return None
    return tenant_id, hash_token(token)
