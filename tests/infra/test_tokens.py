"""Access tokens: the per-process cache of verified tokens never outlives a token's expiry
and never accepts a token that did not verify."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pantherahive.core.errors import Unauthenticated
from pantherahive.infra.security import tokens as tokens_module
from pantherahive.infra.security.signing_keys import KeyRing
from pantherahive.infra.security.tokens import AccessTokens

TokensFactory = Callable[..., AccessTokens]


@pytest.fixture
def make_tokens(tmp_path: Path) -> TokensFactory:
    ring = KeyRing(tmp_path / "keys")
    ring.ensure_key()

    def make(ttl: int = 900) -> AccessTokens:
        return AccessTokens(ring, issuer="iss", audience="aud", ttl_seconds=ttl)

    return make


def test_a_cached_token_still_expires(
    monkeypatch: pytest.MonkeyPatch, make_tokens: TokensFactory
) -> None:
    issuer = make_tokens(ttl=60)
    token = issuer.issue(user_id=uuid.uuid4(), tenant_id=uuid.uuid4(), token_version=0)
    assert issuer.verify(token).token_version == 0
    assert issuer.verify(token).token_version == 0  # from the cache
    later = time.time() + 60 + tokens_module.LEEWAY_SECONDS + 1
    monkeypatch.setattr(tokens_module.time, "time", lambda: later)
    with pytest.raises(Unauthenticated, match="expired"):
        issuer.verify(token)
    assert token not in issuer._verified


def test_a_forged_token_is_refused_even_after_the_genuine_one_was_cached(
    make_tokens: TokensFactory,
) -> None:
    issuer = make_tokens()
    user, tenant = uuid.uuid4(), uuid.uuid4()
    genuine = issuer.issue(user_id=user, tenant_id=tenant, token_version=3)
    issuer.verify(genuine)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    kid = jwt.get_unverified_header(genuine)["kid"]
    forged = jwt.encode(
        {**claims, "ver": 4}, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid}
    )
    with pytest.raises(Unauthenticated):
        issuer.verify(forged)
    assert issuer.verify(genuine).token_version == 3


def test_the_cache_is_bounded(make_tokens: TokensFactory) -> None:
    issuer = make_tokens()
    size = tokens_module._VERIFIED_CACHE_SIZE
    for _ in range(size + 10):
        issuer.verify(issuer.issue(user_id=uuid.uuid4(), tenant_id=uuid.uuid4(), token_version=0))
    assert len(issuer._verified) == size


def test_a_personal_token_names_its_tenant_and_is_kept_as_its_hash() -> None:
    tenant = uuid.uuid4()
    issued = tokens_module.new_personal_token(tenant)
    assert issued.token.startswith(issued.prefix)
    assert issued.prefix.startswith(tokens_module.PERSONAL_PREFIX)
    assert tokens_module.parse_personal_token(issued.token) == (tenant, issued.token_hash)
    assert issued.token_hash == tokens_module.hash_token(issued.token)


@pytest.mark.parametrize(
    "token",
    ["", "ph_pat_", "phr_" + "0" * 32 + "_x", "ph_pat_" + "0" * 39 + "_" + "0" * 32,
     "ph_pat_" + "0" * 40 + "_" + "z" * 32, "ph_pat_" + "0" * 40 + "_" + "0" * 200],
)
def test_a_malformed_personal_token_parses_to_nothing(token: str) -> None:
    assert tokens_module.parse_personal_token(token) is None
