"""The command line against the real test database."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner

from pantherahive.cli.main import app
from pantherahive.settings import get_settings
from tests.conftest import unique
from tests.support.db import database_url

runner = CliRunner()


async def invoke(args: list[str]) -> Result:
    """The CLI runs its own event loop, so it runs in a thread beside the test's loop."""
    return await asyncio.to_thread(runner.invoke, app, args)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", database_url())
    monkeypatch.setenv("PANTHERAHIVE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PANTHERAHIVE_ARGON2_MEMORY_KIB", "1024")
    monkeypatch.setenv("PANTHERAHIVE_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("PANTHERAHIVE_ARGON2_PARALLELISM", "1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_every_command_explains_itself() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "migrate", "create-tenant", "create-user", "demo"):
        assert command in result.output
        sub = runner.invoke(app, [command, "--help"])
        assert sub.exit_code == 0, command
        assert len(sub.output.strip().splitlines()) > 3


@pytest.mark.usefixtures("cli_env")
def test_migrate_is_idempotent() -> None:
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 0, result.output
    assert "latest migration" in result.output


@pytest.mark.usefixtures("cli_env")
async def test_create_tenant_prints_working_credentials_once(client: httpx.AsyncClient) -> None:
    slug = unique("cli")
    result = await invoke(["create-tenant", slug, "--admin-username", "boss"])
    assert result.exit_code == 0, result.output
    password = re.search(r"password: (\S+)", result.output)
    assert password is not None
    login = await client.post(
        "/v1/auth/login", json={"tenant": slug, "login": "boss", "password": password.group(1)}
    )
    assert login.status_code == 200

    user = await invoke(["create-user", slug, "worker", "--role", "manager"])
    assert user.exit_code == 0, user.output
    again = await invoke(["create-tenant", slug])
    assert again.exit_code == 1
    assert "taken" in again.output
    missing = await invoke(["create-user", "no-such-tenant", "x1x"])
    assert missing.exit_code == 1


@pytest.mark.usefixtures("cli_env")
async def test_demo_creates_a_tenant_you_can_log_in_to(client: httpx.AsyncClient) -> None:
    first = await invoke(["demo"])
    assert first.exit_code == 0, first.output
    second = await invoke(["demo"])
    assert second.exit_code == 0
    assert "already exists" in second.output
    from pantherahive.domains.identity.cli_ops import DEMO_PASSWORD

    for login in ("alice", "bob", "carol"):
        response = await client.post(
            "/v1/auth/login", json={"tenant": "demo", "login": login, "password": DEMO_PASSWORD}
        )
        assert response.status_code == 200, login


@pytest.mark.usefixtures("cli_env")
async def test_closed_sign_up_leaves_the_cli_as_the_way_to_make_tenants(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/configuration.md: with sign-up closed, tenants are made with create-tenant."""
    monkeypatch.setenv("PANTHERAHIVE_SIGNUP_OPEN", "false")
    get_settings.cache_clear()
    slug = unique("closed-cli")
    result = await invoke(["create-tenant", slug, "--admin-username", "ops"])
    assert result.exit_code == 0, result.output
    password = re.search(r"password: (\S+)", result.output)
    assert password is not None
    login = await client.post(
        "/v1/auth/login", json={"tenant": slug, "login": "ops", "password": password.group(1)}
    )
    assert login.status_code == 200
