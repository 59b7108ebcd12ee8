"""Access tokens (JWT, one explicit algorithm) and opaque single-purpose tokens.

Opaque tokens (refresh, email verification, password reset) are random, carry their
tenant in clear so the server knows where to look, and are stored only as SHA-256 hashes.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from uuid import UUID, uuid4

import jwt

from pantherahive.core.errors import Unauthenticated

ALGORITHM = "HS256"
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
    def __init__(self, secret: str, *, issuer: str, audience: str, ttl_seconds: int) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self.ttl_seconds = ttl_seconds
        self._verified: dict[str, AccessClaims] = {}

    def issue(
        self,
        *,
        user_id: UUID,
        tenant_id: UUID,
        token_version: int,
        session_id: UUID | None = None,
    ) -> str:
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
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> AccessClaims:
        """The token's claims, if its signature, algorithm, issuer, audience and lifetime
        hold. A token verified before is not decoded again, but its expiry is still
        checked on every call (the same bytes verify the same way; only time changes)."""
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at + LEEWAY_SECONDS <= time.time():
                del self._verified[token]
                raise Unauthenticated("The access token has expired.")
            return known
        claims = self._decode(token)
        if len(self._verified) >= _VERIFIED_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = claims
        return claims

    def _decode(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
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
