"""Shared fixtures: one real PostgreSQL per test session with the real migrations, the
app on it, and factories that build tenants and users through the public API.

Tests isolate by tenant (every test makes its own), which is the platform's own isolation
boundary, so nothing needs rolling back between tests.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from pantherahive.domains.identity.delivery import RecordingSender
from pantherahive.infra.db.migrate import upgrade
from pantherahive.main import create_app
from pantherahive.settings import Settings
from tests.support.db import remember_database
from tests.support.servers import app_url, create_database, drop_database, postgres_server

PASSWORD = "correct-horse-1"
_counter = itertools.count()


_SHARED_KEYS: list[Path] = []


def shared_signing_keys() -> Path:
    """One signing-key directory for every app the tests start, as a fleet shares one: a
    token issued by the session's app is valid in a test's own app (removed at exit)."""
    if not _SHARED_KEYS:
        keys = Path(tempfile.mkdtemp(prefix="ph-test-keys-"))
        atexit.register(shutil.rmtree, keys, ignore_errors=True)
        _SHARED_KEYS.append(keys)
    return _SHARED_KEYS[0]


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp,
        "signing_keys_dir": shared_signing_keys(),
        "jwt_secret": "test-secret-" + "x" * 40,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        "rate_limit_login_failures": "1000/5 minutes",
        "rate_limit_anonymous": "100000/minute",
        "rate_limit_user": "100000/minute",
        "log_level": "warning",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def database_url(pg_server: str) -> Iterator[str]:
    url = asyncio.run(create_database(pg_server))
    upgrade(url)
    remember_database(url)
    yield url
    asyncio.run(drop_database(url))


@pytest.fixture(scope="session", autouse=True)
def _test_database(database_url: str) -> str:
    """Every test may reach the session's database (``tests.support.db.database_url()``)."""
    return database_url


@pytest.fixture(scope="session")
def sender() -> RecordingSender:
    return RecordingSender()


@asynccontextmanager
async def running_app(
    database_url: str, settings: Settings, sender: RecordingSender | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan entered, and an HTTP client talking to it in-process.

    ``database_url`` is the owner's (the fixture's): the app logs in as ``pantherahive_app``.
    """
    app = create_app(settings, database_url=app_url(database_url), sender=sender)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
async def client(
    database_url: str, settings: Settings, sender: RecordingSender
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(database_url, settings, sender) as client:
        yield client


@dataclass
class Actor:
    """A logged-in user of a test tenant."""

    id: str
    username: str
    role: str
    token: str
    refresh_token: str
    email: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class TenantHandle:
    id: str
    slug: str
    admin: Actor
    users: dict[str, Actor] = field(default_factory=dict)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:6]}"


async def create_tenant(client: httpx.AsyncClient) -> TenantHandle:
    slug = unique("t")
    response = await client.post(
        "/v1/tenants",
        json={
            "name": slug,
            "slug": slug,
            "admin": {"username": "admin", "password": PASSWORD, "email": f"admin@{slug}.example"},
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    admin = Actor(
        body["user"]["id"],
        "admin",
        "ADMIN",
        body["accessToken"],
        body["refreshToken"],
        f"admin@{slug}.example",
    )
    return TenantHandle(body["tenant"]["id"], slug, admin)


async def add_user(
    client: httpx.AsyncClient, tenant: TenantHandle, role: str, username: str | None = None
) -> Actor:
    username = username or unique(role.lower())
    email = f"{username}@{tenant.slug}.example"
    response = await client.post(
        "/v1/users",
        headers=tenant.admin.headers,
        json={"username": username, "password": PASSWORD, "role": role, "email": email},
    )
    assert response.status_code == 201, response.text
    login = await client.post(
        "/v1/auth/login", json={"tenant": tenant.slug, "login": username, "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    tokens = login.json()
    actor = Actor(
        response.json()["id"], username, role, tokens["accessToken"], tokens["refreshToken"], email
    )
    tenant.users[username] = actor
    return actor


TenantFactory = Callable[[], Awaitable[TenantHandle]]


@pytest.fixture
def tenant_factory(client: httpx.AsyncClient) -> TenantFactory:
    return lambda: create_tenant(client)


@pytest.fixture
async def tenant(client: httpx.AsyncClient) -> TenantHandle:
    """A fresh tenant with an ADMIN, a MANAGER and a MEMBER (``tenant.users[role]``)."""
    handle = await create_tenant(client)
    handle.users["ADMIN"] = handle.admin
    for role in ("MANAGER", "MEMBER"):
        handle.users[role] = await add_user(client, handle, role)
    return handle
