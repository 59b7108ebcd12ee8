"""The command line against the real test database."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from click.testing import Result
from typer.testing import CliRunner

from pantherahive.cli.main import app
from pantherahive.settings import get_settings
from tests.conftest import unique
from tests.support.db import database_url, outbox_types
from tests.support.servers import set_database_env

runner = CliRunner()


async def invoke(args: list[str]) -> Result:
    """The CLI runs its own event loop, so it runs in a thread beside the test's loop."""
    return await asyncio.to_thread(runner.invoke, app, args)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    set_database_env(monkeypatch, database_url())
    monkeypatch.setenv("PANTHERAHIVE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PANTHERAHIVE_ARGON2_MEMORY_KIB", "1024")
    monkeypatch.setenv("PANTHERAHIVE_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("PANTHERAHIVE_ARGON2_PARALLELISM", "1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


# What each command's --help must say for a newcomer to use it without the README.
HELP = {
    "serve": ["Serve the HTTP API", "--host", "--port", "--workers", "--no-migrate"],
    "migrate": ["Apply every pending database migration"],
    "create-tenant": [
        "Create a tenant with its first ADMIN",
        "[a-z0-9-]{3,63}",  # once eaten by Rich markup, leaving "URL-safe id: {3,63}."
        "--admin-username",
        "--admin-email",
        "PANTHERAHIVE_SIGNUP_OPEN",
    ],
    "create-user": ["Add a user to an existing tenant", "ADMIN, MANAGER or MEMBER", "--password"],
    "demo": ["Create the tenant 'demo'"],
    "keys": ["Access-token signing keys", "list", "add", "activate", "retire", "prune"],
}


def _flat(text: str) -> str:
    """--help as plain words: Rich's box drawing and line wrapping removed."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_every_command_explains_itself() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for command, phrases in HELP.items():
        assert command in result.output
        sub = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert sub.exit_code == 0, command
        for phrase in phrases:
            assert phrase in _flat(sub.output), (command, phrase, sub.output)


def test_a_role_that_does_not_exist_is_a_usage_error_not_a_traceback() -> None:
    result = runner.invoke(app, ["create-user", "acme", "someone", "--role", "BOSS"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "BOSS" in result.output
    assert "member" in result.output.lower()


def test_serve_on_a_taken_port_says_so_before_starting_anything(
    cli_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # no DATABASE_URL: serve would start the embedded PostgreSQL in the data directory
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.delenv("DATABASE_ADMIN_URL")
    get_settings.cache_clear()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--host", "127.0.0.1", "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"Cannot listen on 127.0.0.1:{port}" in _flat(result.output)
    assert "PANTHERAHIVE_PORT" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "postgres").exists()


@pytest.mark.usefixtures("cli_env")
def test_migrate_is_idempotent() -> None:
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 0, result.output
    assert "latest migration" in result.output


@pytest.mark.usefixtures("cli_env")
def test_migrate_with_only_the_app_login_names_the_owner_url_it_needs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_ADMIN_URL")
    get_settings.cache_clear()
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 1, result.output
    assert "DATABASE_ADMIN_URL is not set" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "postgres").exists()  # nor did it fall back to the embedded one


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
    assert second.exit_code == 0, second.output
    assert "already exists" in second.output
    assert "nothing was added" in second.output
    from pantherahive.domains.identity.cli_ops import DEMO_PASSWORD

    for login in ("alice", "bob", "carol"):
        response = await client.post(
            "/v1/auth/login", json={"tenant": "demo", "login": login, "password": DEMO_PASSWORD}
        )
        assert response.status_code == 200, login


@pytest.mark.usefixtures("cli_env")
async def test_demo_has_projects_tasks_and_commands_to_look_at_them(
    client: httpx.AsyncClient,
) -> None:
    from pantherahive.domains.identity.cli_ops import DEMO_PASSWORD

    first = await invoke(["demo"])
    assert first.exit_code == 0, first.output
    again = await invoke(["demo"])  # idempotent: nothing twice, and the same commands
    assert again.exit_code == 0, again.output
    login = await client.post(
        "/v1/auth/login", json={"tenant": "demo", "login": "alice", "password": DEMO_PASSWORD}
    )
    headers = {"Authorization": f"Bearer {login.json()['accessToken']}"}
    projects = (await client.get("/v1/projects", headers=headers)).json()["items"]
    demo = [p for p in projects if p["name"] in {"Website relaunch", "Mobile app beta"}]
    assert len(demo) == 2, projects

    tasks: list[dict[str, Any]] = []
    for project in demo:
        members = await client.get(f"/v1/projects/{project['id']}/members", headers=headers)
        assert len(members.json()["items"]) == 3  # the owner and two members
        page = await client.get(
            f"/v1/projects/{project['id']}/tasks?limit=200", headers=headers
        )
        tasks += page.json()["items"]
    assert len(tasks) == 30
    assert all(t["assigneeId"] and t["labels"] and t["dueDate"] for t in tasks)
    assert sum(1 for t in tasks if t["dependsOn"]) >= 6  # a few chains
    blocked = [t for t in tasks if t["blocked"]]
    assert len(blocked) == 1, blocked
    assert {t["status"] for t in tasks} >= {"TODO", "IN_PROGRESS", "DONE"}

    # written through the services: every task has its event (and so its audit record)
    claims = jwt.decode(login.json()["accessToken"], options={"verify_signature": False})
    types = await outbox_types(claims["tid"])
    assert types.count("task.created") == 30
    assert types.count("project.created") == 2

    # the three commands name real things: the schedule of the first project, the stream,
    # and the audit trail; the same on every run
    website = next(p for p in demo if p["name"] == "Website relaunch")
    for output in (first.output, again.output):
        flat = " ".join(output.split())
        assert "TOKEN=$(curl -s -X POST" in flat
        assert f"/v1/projects/{website['id']}/schedule" in flat
        assert "/v1/notifications/stream" in flat
        assert "/v1/audit-events" in flat
        assert blocked[0]["id"] in flat
    schedule = await client.get(f"/v1/projects/{website['id']}/schedule", headers=headers)
    assert schedule.status_code == 200
    assert len(schedule.json()["items"]) == 15


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


@pytest.mark.usefixtures("cli_env")
async def test_invalid_input_is_explained_field_by_field() -> None:
    bad_slug = await invoke(["create-tenant", "Not A Slug!"])
    assert bad_slug.exit_code == 1
    assert "slug: String should match pattern" in bad_slug.output
    slug = unique("cli-bad")
    assert (await invoke(["create-tenant", slug])).exit_code == 0
    short = await invoke(["create-user", slug, "worker", "--password", "short"])
    assert short.exit_code == 1
    assert "password: String should have at least 8 characters" in short.output
    mail = await invoke(["create-user", slug, "worker", "--email", "not-an-address"])
    assert mail.exit_code == 1
    assert "email: value is not a valid email address" in mail.output
    for result in (bad_slug, short, mail):
        assert "errors.pydantic.dev" not in result.output
        assert "Traceback" not in result.output
        assert "validation error" not in result.output  # pydantic's own headline
