"""A dependency that is down is a 503 with Retry-After (the contract's "dependency down"),
logged once — not a 500 that reads like a bug."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pantherahive.infra.db.migrate import upgrade
from pantherahive.infra.security.signing_keys import key_ring
from pantherahive.infra.security.tokens import AccessTokens
from tests.conftest import PASSWORD, create_tenant, make_settings, running_app
from tests.support.db import database_url
from tests.support.servers import create_database, drop_database, free_port, owner_connection


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert body["status"] == 503
    assert body["type"].endswith("/service-unavailable")
    # nothing about where the database is or what the driver said
    assert "Connect call failed" not in response.text
    assert "127.0.0.1" not in response.text
    assert "asyncpg" not in response.text


def _error_lines(caplog: pytest.LogCaptureFixture, request_id: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and request_id in r.getMessage()
    ]


async def test_database_refusing_connections_is_503_on_every_kind_of_route(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/pantherahive"
    settings = make_settings(tmp_path, bus_run_consumers=False, notifications_worker_enabled=False)
    token = AccessTokens(
        key_ring(settings),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=300,
    ).issue(user_id=uuid.uuid4(), tenant_id=uuid.uuid4(), token_version=0,
            session_id=uuid.uuid4())
    requests = {
        "authenticated": ("GET", "/v1/users/me", {"Authorization": f"Bearer {token}"}, None),
        "login": (
            "POST",
            "/v1/auth/login",
            {},
            {"tenant": "acme", "login": "ada", "password": PASSWORD},
        ),
        # the Idempotency-Key lookup runs before any route
        "idempotent": (
            "POST",
            "/v1/tenants",
            {"Idempotency-Key": "k-1"},
            {"name": "a", "slug": "acme", "admin": {"username": "ada", "password": PASSWORD}},
        ),
    }
    async with running_app(nowhere, settings) as client:
        with caplog.at_level(logging.INFO):
            for name, (method, path, headers, body) in requests.items():
                request_id = f"down-{name}"
                response = await client.request(
                    method, path, headers={**headers, "X-Request-ID": request_id}, json=body
                )
                _assert_unavailable(response)
                lines = _error_lines(caplog, request_id)
                assert len(lines) == 1, lines
                assert "Traceback" not in lines[0]
        ready = await client.get("/readyz")
        assert ready.status_code == 503


@pytest.fixture
async def own_database(pg_server: str) -> AsyncIterator[str]:
    """A database of this test's own, so killing its connections harms no other test."""
    url = await create_database(pg_server)
    await asyncio.to_thread(upgrade, url)
    yield url
    await drop_database(url)


async def test_connections_killed_under_the_app_are_503_then_it_recovers(
    tmp_path: Path, own_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, bus_run_consumers=False, notifications_worker_enabled=False)
    async with running_app(own_database, settings) as client:
        tenant = await create_tenant(client)
        assert (await client.get("/v1/users/me", headers=tenant.admin.headers)).status_code == 200
        # what a database restart or failover does to every pooled connection
        owner = await owner_connection(own_database)
        try:
            killed = await owner.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await owner.close()
        assert killed >= 1
        with caplog.at_level(logging.INFO):
            broken = await client.get(
                "/v1/users/me", headers={**tenant.admin.headers, "X-Request-ID": "killed-1"}
            )
        _assert_unavailable(broken)
        assert len(_error_lines(caplog, "killed-1")) == 1
        # the dead connections were thrown away: the next request works again
        again = await client.get("/v1/users/me", headers=tenant.admin.headers)
        assert again.status_code == 200, again.text


async def test_a_bug_is_still_a_500(tmp_path: Path) -> None:
    """FileNotFoundError from application code is not an outage."""
    settings = make_settings(tmp_path)
    async with running_app(database_url(), settings) as client:

        def broken() -> None:
            (tmp_path / "missing" / "file").read_text()

        client.app.add_api_route("/broken", broken)  # type: ignore[attr-defined]
        response = await client.get("/broken")
    assert response.status_code == 500
    assert "retry-after" not in response.headers
