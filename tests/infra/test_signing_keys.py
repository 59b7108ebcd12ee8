"""Signing keys: access tokens carry the kid of an Ed25519 key of the shared ring, every
process holding the ring verifies every other's tokens, and a rotation logs nobody out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import multiprocessing
import stat
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from pantherahive.core import clock
from pantherahive.core.errors import Unauthenticated
from pantherahive.infra.security.signing_keys import (
    MANIFEST,
    KeyRing,
    SigningKeyError,
    SigningKeysMissing,
    key_ring,
)
from pantherahive.infra.security.tokens import AccessTokens
from pantherahive.settings import Settings
from tests.conftest import TenantHandle
from tests.support.races import race

TTL = 900
GRACE = timedelta(seconds=TTL + 10)


def _tokens(ring: KeyRing) -> AccessTokens:
    return AccessTokens(ring, issuer="iss", audience="aud", ttl_seconds=TTL)


def _issue(tokens: AccessTokens) -> str:
    return tokens.issue(user_id=uuid.uuid4(), tenant_id=uuid.uuid4(), token_version=0)


def _kid(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _hs256(claims: dict[str, object], kid: str, secret: bytes) -> str:
    """A token "signed" with HMAC: PyJWT refuses to make one with a public key as the
    secret, which is exactly the forgery (RFC 8725 §2.1) to try."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = _b64(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac)}"


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    ring = KeyRing(tmp_path / "keys", reload_interval_seconds=0)
    assert ring.ensure_key()
    return ring


class Clock:
    """A controlled ``core.clock``: it moves only when the test says."""

    def __init__(self) -> None:
        self.moment = datetime.now(UTC)

    def advance(self, delta: timedelta) -> None:
        self.moment += delta


@pytest.fixture
def controlled_clock() -> Iterator[Clock]:
    moments = Clock()
    with clock.frozen(lambda: moments.moment):
        yield moments


def test_tokens_carry_the_active_kid_and_verify(ring: KeyRing) -> None:
    tokens = _tokens(ring)
    token = _issue(tokens)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    assert header["kid"] == ring.signer()[0]
    assert tokens.verify(token).token_version == 0
    pem = (ring.directory / f"{header['kid']}.pem").stat()
    assert stat.S_IMODE(pem.st_mode) == 0o600


def test_a_token_signed_by_a_key_outside_the_ring_is_refused(ring: KeyRing) -> None:
    tokens = _tokens(ring)
    genuine = _issue(tokens)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    stranger = Ed25519PrivateKey.generate()
    for kid in (_kid(genuine), "20200101-deadbeef"):
        forged = jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": kid})
        with pytest.raises(Unauthenticated, match="not valid"):
            tokens.verify(forged)
    unsigned_kid = jwt.encode(claims, ring.signer()[1], algorithm="EdDSA")  # no kid at all
    with pytest.raises(Unauthenticated):
        tokens.verify(unsigned_kid)


def test_a_changed_algorithm_is_refused(ring: KeyRing) -> None:
    tokens = _tokens(ring)
    genuine = _issue(tokens)
    kid = _kid(genuine)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    public = ring.signer()[1].public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk_x = ring.current().jwks(clock.now())[0]["x"].encode()
    forgeries = [
        jwt.encode(claims, key=None, algorithm="none", headers={"kid": kid}),  # type: ignore[arg-type]
        *(_hs256(claims, kid, secret) for secret in (pem, raw, jwk_x)),
    ]
    for forged in forgeries:
        with pytest.raises(Unauthenticated, match="not valid"):
            tokens.verify(forged)


def test_two_processes_with_the_same_key_directory_verify_each_others_tokens(
    ring: KeyRing,
) -> None:
    one = _tokens(ring)
    two = _tokens(KeyRing(ring.directory))  # another process: its own reading of the files
    assert two.verify(_issue(one)).token_version == 0
    assert one.verify(_issue(two)).token_version == 0


def test_rotation_logs_nobody_out(ring: KeyRing, controlled_clock: Clock) -> None:
    # a running server that looks at the manifest only when a token names a key it lacks
    server = _tokens(KeyRing(ring.directory, reload_interval_seconds=3600))
    old_kid = ring.signer()[0]
    before = _issue(server)
    assert server.verify(before)

    operator = KeyRing(ring.directory)
    added = operator.add()
    assert operator.activate(added.kid) == old_kid
    other_process = _tokens(KeyRing(ring.directory))
    after = _issue(other_process)
    assert _kid(after) == added.kid
    assert server.verify(after)  # a kid it had not read yet: it looked again
    assert _kid(_issue(server)) == added.kid  # and signs with the new key since
    assert other_process.verify(before)  # the old key's tokens still verify

    with pytest.raises(SigningKeyError, match="signs new tokens"):
        operator.retire(added.kid, grace=GRACE)
    retired = operator.retire(old_kid, grace=GRACE)
    assert retired.verify_until == controlled_clock.moment + GRACE
    assert operator.prune() == []  # not yet: its tokens are still valid
    assert other_process.verify(before)
    assert old_kid in {key["kid"] for key in operator.current().jwks(clock.now())}
    with pytest.raises(SigningKeyError, match="retired"):
        operator.activate(old_kid)

    controlled_clock.advance(GRACE)
    assert [entry.kid for entry in operator.prune()] == [old_kid]
    assert not (ring.directory / f"{old_kid}.pem").exists()
    fresh = _tokens(KeyRing(ring.directory))
    for tokens in (server, other_process, fresh):
        tokens.keys.refresh()
        with pytest.raises(Unauthenticated, match="not valid"):
            tokens.verify(before)  # even where it was verified (and cached) before
        assert tokens.verify(after)
    assert [key["kid"] for key in fresh.keys.current().jwks(clock.now())] == [added.kid]


def test_a_retired_key_stops_verifying_at_its_time_even_before_a_prune(
    ring: KeyRing, controlled_clock: Clock
) -> None:
    tokens = _tokens(ring)
    old = _issue(tokens)
    ring.add(activate=True)
    ring.retire(_kid(old), grace=GRACE)
    assert tokens.verify(old)
    controlled_clock.advance(GRACE)
    fresh = _tokens(KeyRing(ring.directory))
    with pytest.raises(Unauthenticated):
        fresh.verify(old)
    assert _kid(old) not in {key["kid"] for key in fresh.keys.current().jwks(clock.now())}


def test_an_unreadable_manifest_keeps_the_keys_in_hand(ring: KeyRing) -> None:
    tokens = _tokens(ring)
    token = _issue(tokens)
    (ring.directory / MANIFEST).write_text("{not json", encoding="utf-8")
    assert tokens.verify(_issue(tokens))
    assert tokens.verify(token)
    with pytest.raises(SigningKeysMissing, match="cannot be read"):
        KeyRing(ring.directory).current()


def test_the_jwks_lists_public_keys_only(ring: KeyRing) -> None:
    ring.add()
    keys = ring.current().jwks(clock.now())
    assert len(keys) == 2
    for key in keys:
        assert set(key) == {"kty", "crv", "x", "kid", "use", "alg"}
        described = (key["kty"], key["crv"], key["use"], key["alg"])
        assert described == ("OKP", "Ed25519", "sig", "EdDSA")
        assert len(base64.urlsafe_b64decode(key["x"] + "=")) == 32


async def test_jwks_endpoint_serves_the_key_of_the_tokens(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    keys = response.json()["keys"]
    assert all("d" not in key for key in keys)
    by_kid = {key["kid"]: key for key in keys}
    token = tenant.admin.token
    published = jwt.PyJWK(by_kid[_kid(token)])  # a verifier that has only the JWKS
    claims = jwt.decode(
        token, published.key, algorithms=["EdDSA"], audience="pantherahive-api",
        issuer="pantherahive",
    )
    assert claims["sub"] == tenant.admin.id
    schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/.well-known/jwks.json"]["get"]
    assert "security" not in operation
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JwkSet"
    }


def _production(tmp_path: Path, **values: Any) -> Settings:
    secret = "5e0b9d27c4a1f863e2d7b05a9c4f1e38d6a2b7c90f5e3d14"  # every other one is set
    return Settings(
        _env_file=None, env="production", data_dir=tmp_path, jwt_secret=secret,
        secret_key=secret, **values,
    )


def test_production_without_a_signing_keys_directory_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="PANTHERAHIVE_SIGNING_KEYS_DIR"):
        _production(tmp_path)
    settings = _production(tmp_path, signing_keys_dir=tmp_path / "k")
    with pytest.raises(SigningKeysMissing, match=r"PANTHERAHIVE_SIGNING_KEYS_DIR.*keys add"):
        key_ring(settings)
    assert not (tmp_path / "k" / MANIFEST).exists()  # production never makes a key itself
    KeyRing(tmp_path / "k").add(activate=True)
    assert key_ring(settings).signer()


def test_production_with_keys_but_none_active_does_not_start(tmp_path: Path) -> None:
    KeyRing(tmp_path / "k").add()
    settings = _production(tmp_path, signing_keys_dir=tmp_path / "k")
    with pytest.raises(SigningKeysMissing, match="No active signing key"):
        key_ring(settings)


def test_development_makes_its_first_key_in_the_data_directory(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)
    kid = key_ring(settings).signer()[0]
    assert (tmp_path.resolve() / "keys" / f"{kid}.pem").exists()
    assert key_ring(settings).signer()[0] == kid  # kept, not made again


PROCESSES = 4
DIRECTORIES = 25


def _race(root: str, barrier: Barrier, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    barrier.wait()
    try:
        kids = []
        for i in range(DIRECTORIES):
            ring = KeyRing(Path(root) / str(i))
            ring.ensure_key()
            kids.append(ring.signer()[0])
    except BaseException as exc:  # report it: an exception is what this test hunts
        results.put(("error", repr(exc)))
        return
    results.put(("ok", kids))


def test_processes_racing_on_an_empty_directory_share_one_first_key(tmp_path: Path) -> None:
    """What ``serve --workers N`` (or N containers on one volume) does on a first start."""
    answers, _ = race(
        _race, str(tmp_path), processes=PROCESSES,
        preload=["pantherahive.infra.security.signing_keys", __name__],
    )
    errors = [value for kind, value in answers if kind != "ok"]
    assert not errors, errors
    for i in range(DIRECTORIES):
        assert len({kids[i] for _, kids in answers}) == 1, i
        assert len(list((tmp_path / str(i)).glob("*.pem"))) == 1
        assert not list((tmp_path / str(i)).glob(".*.tmp"))


def test_token_lifetime_is_checked_against_the_wall_clock_not_the_key_clock(
    ring: KeyRing, controlled_clock: Clock
) -> None:
    """Moving ``core.clock`` (retirement, prunes) leaves token expiry to PyJWT's clock."""
    tokens = _tokens(ring)
    token = _issue(tokens)
    controlled_clock.advance(timedelta(days=1))
    assert tokens.verify(token).expires_at > time.time()
