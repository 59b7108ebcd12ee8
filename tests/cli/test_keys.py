"""``pantherahive keys``: a whole rotation from the command line, each step saying what
changed, and the refusals that keep users logged in."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from typer.testing import CliRunner

from pantherahive.cli.main import app
from pantherahive.core import clock
from pantherahive.infra.security.signing_keys import KeyRing
from pantherahive.infra.security.tokens import AccessTokens
from pantherahive.settings import get_settings
from tests.support.db import database_url
from tests.support.servers import app_url, free_port

runner = CliRunner()


@pytest.fixture
def keys_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("PANTHERAHIVE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PANTHERAHIVE_ACCESS_TOKEN_TTL_SECONDS", "600")
    get_settings.cache_clear()
    yield tmp_path.resolve() / "keys"
    get_settings.cache_clear()


def keys(*args: str) -> str:
    result = runner.invoke(app, ["keys", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def refused(*args: str) -> str:
    result = runner.invoke(app, ["keys", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def added_kid(output: str) -> str:
    found = re.search(r"Added key (\S+) in", output)
    assert found is not None, output
    return found.group(1)


def states(output: str) -> dict[str, str]:
    return dict(re.findall(r"^\s+(\d{8}-[0-9a-f]{8})\s+(\w+)", output, re.MULTILINE))


def test_keys_help_names_every_step() -> None:
    result = runner.invoke(app, ["keys", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for command in ("list", "add", "activate", "retire", "prune"):
        assert command in result.output


def test_a_rotation_from_the_command_line(keys_dir: Path) -> None:
    moment = [datetime.now(UTC)]
    assert "none yet" in keys("list")
    first = added_kid(out := keys("add", "--activate"))
    assert "now signs new access tokens" in out
    tokens = AccessTokens(
        KeyRing(keys_dir, reload_interval_seconds=0), issuer="i", audience="a", ttl_seconds=600
    )
    old_token = tokens.issue(user_id=uuid.uuid4(), tenant_id=uuid.uuid4(), token_version=0)

    second = added_kid(out := keys("add"))
    assert f"keys activate {second}" in out
    assert states(keys("list")) == {first: "active", second: "published"}
    assert "activate another key before retiring it" in _flat(refused("retire", first))

    out = keys("activate", second)
    assert f"Key {second} now signs" in out
    assert f"keys retire {first}" in _flat(out)
    assert "nothing changed" in keys("activate", second)
    with clock.frozen(lambda: moment[0]):
        out = keys("retire", first)
        assert "verifies until" in out
        assert states(keys("list")) == {first: "retired", second: "active"}
        assert "nothing deleted" in keys("prune")
        assert tokens.verify(old_token)  # still logged in
        assert "cannot sign again" in _flat(refused("activate", first))

        moment[0] += timedelta(seconds=600 + 10)
        assert states(keys("list")) == {first: "expired", second: "active"}
        assert f"Deleted key {first}" in keys("prune")
        assert states(keys("list")) == {second: "active"}
    assert "No key 'nope'" in refused("activate", "nope")


def test_retiring_the_signer_is_refused(keys_dir: Path) -> None:
    kid = added_kid(keys("add", "--activate"))
    out = _flat(refused("retire", kid))
    assert "activate another key before retiring it" in out
    assert states(keys("list")) == {kid: "active"}


def test_commands_on_an_empty_directory_say_how_to_start(keys_dir: Path) -> None:
    for command in (["activate", "x"], ["retire", "x"], ["prune"]):
        assert "keys add --activate" in _flat(refused(*command))


def _flat(text: str) -> str:
    return " ".join(text.split())


FLEET_SECRET = "9c41e07a5db2f86e3a1c7d940b5e2f18c6a3d90e7b4f2c1a"


def _serve_env(database_url: str, data_dir: Path, keys_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PANTHERAHIVE_", "REDIS_"))}
    env.update(
        # The least-privilege login: production refuses to serve as the owner.
        DATABASE_URL=app_url(database_url),
        PANTHERAHIVE_ENV="production",
        PANTHERAHIVE_SECRET_KEY=FLEET_SECRET,
        PANTHERAHIVE_JWT_SECRET=FLEET_SECRET,
        PANTHERAHIVE_SIGNING_KEYS_DIR=str(keys_dir),
        PANTHERAHIVE_DATA_DIR=str(data_dir),
        PANTHERAHIVE_PORT=str(port),
        PANTHERAHIVE_LOG_LEVEL="warning",
        PANTHERAHIVE_BUS_RUN_CONSUMERS="false",
        PANTHERAHIVE_NOTIFICATIONS_WORKER_ENABLED="false",
        PANTHERAHIVE_ARGON2_MEMORY_KIB="1024",
        PANTHERAHIVE_ARGON2_TIME_COST="1",
        PANTHERAHIVE_ARGON2_PARALLELISM="1",
    )
    return env


SERVE = [sys.executable, "-m", "pantherahive.cli", "serve", "--no-migrate"]


@contextmanager
def serving(env: dict[str, str], log_path: Path) -> Iterator[str]:
    base = f"http://127.0.0.1:{env['PANTHERAHIVE_PORT']}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(SERVE, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError("not ready in time:\n" + log_path.read_text())
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def test_a_production_start_without_signing_keys_names_the_setting(tmp_path: Path) -> None:
    env = _serve_env(database_url(), tmp_path / "data", tmp_path / "keys", free_port())
    refused = subprocess.run(SERVE, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    message = _flat(refused.stderr)
    assert "PANTHERAHIVE_SIGNING_KEYS_DIR" in message
    assert "pantherahive keys add --activate" in message
    assert "Traceback" not in refused.stderr
    del env["PANTHERAHIVE_SIGNING_KEYS_DIR"]
    unset = subprocess.run(SERVE, env=env, capture_output=True, text=True, timeout=120)
    assert unset.returncode != 0
    assert "PANTHERAHIVE_SIGNING_KEYS_DIR must be set in production" in _flat(unset.stderr)


def test_two_servers_sharing_the_key_files_accept_each_others_tokens_through_a_rotation(
    tmp_path: Path,
) -> None:
    keys_dir = tmp_path / "keys"
    setup = subprocess.run(
        [sys.executable, "-m", "pantherahive.cli", "keys", "add", "--activate"],
        env=_serve_env(database_url(), tmp_path / "a", keys_dir, free_port()),
        capture_output=True, text=True, timeout=60,
    )
    assert setup.returncode == 0, setup.stderr
    first_kid = added_kid(setup.stdout)
    one_env = _serve_env(database_url(), tmp_path / "a", keys_dir, free_port())
    two_env = _serve_env(database_url(), tmp_path / "b", keys_dir, free_port())
    with serving(one_env, tmp_path / "one.log") as one, \
            serving(two_env, tmp_path / "two.log") as two:
        slug = f"fleet-{uuid.uuid4().hex[:8]}"
        created = httpx.post(f"{one}/v1/tenants", timeout=30, json={
            "name": slug, "slug": slug, "admin": {"username": "root", "password": "fleet-pass-1"},
        })
        assert created.status_code == 201, created.text
        before = created.json()["accessToken"]
        assert jwt.get_unverified_header(before)["kid"] == first_kid
        assert _me(two, before) == 200

        operator = KeyRing(keys_dir)
        second_kid = operator.add(activate=True).kid  # the rotation, mid-traffic
        # a token of the new key (as a third process would sign it) reaches server two
        # first: a kid it has not read yet makes it read the manifest at once
        body = created.json()
        third = AccessTokens(
            operator, issuer="pantherahive", audience="pantherahive-api", ttl_seconds=60
        ).issue(
            user_id=uuid.UUID(body["user"]["id"]),
            tenant_id=uuid.UUID(body["tenant"]["id"]),
            token_version=0,
            # the sign-up's login session: an access token belongs to a live session
            session_id=uuid.UUID(jwt.decode(before, options={"verify_signature": False})["sid"]),
        )
        assert _me(two, third) == 200
        login = httpx.post(f"{two}/v1/auth/login", timeout=30, json={
            "tenant": slug, "login": "root", "password": "fleet-pass-1",
        })
        assert login.status_code == 200, login.text
        after = login.json()["accessToken"]
        assert jwt.get_unverified_header(after)["kid"] == second_kid
        for base in (one, two):
            assert _me(base, after) == 200
            assert _me(base, before) == 200  # nobody logged out
            published = httpx.get(f"{base}/.well-known/jwks.json", timeout=10).json()["keys"]
            assert {key["kid"] for key in published} == {first_kid, second_kid}


def _me(base: str, token: str) -> int:
    with httpx.Client(timeout=10) as fresh:
        headers = {"Authorization": f"Bearer {token}"}
        return fresh.get(f"{base}/v1/users/me", headers=headers).status_code
