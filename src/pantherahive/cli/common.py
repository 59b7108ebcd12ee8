"""What every command group of the CLI shares: the database to use (migrated on request),
running until a signal, and saying a failure plainly. ``main`` registers the groups; they
import this module, never ``main``, so no command module imports another."""

from __future__ import annotations

import asyncio
import functools
import signal
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import typer

from pantherahive.settings import get_settings

T = TypeVar("T")


@functools.cache
def _say_if_embedded() -> None:
    settings = get_settings()
    if settings.database_url is None and settings.database_admin_url is None:
        typer.secho(
            f"Using the embedded PostgreSQL in {settings.data_path / 'postgres'}",
            err=True,
            fg=typer.colors.BLUE,
        )


def database_url() -> str:
    """The app login's URL (DATABASE_URL, or the embedded PostgreSQL's, started if need be):
    what the API, worker, relay and delivery processes connect with."""
    from pantherahive.main import resolve_database_url

    _say_if_embedded()
    try:
        return resolve_database_url(get_settings())
    except ValueError as exc:
        fail(str(exc))


def admin_database_url() -> str:
    """The owner's URL (DATABASE_ADMIN_URL, or the embedded PostgreSQL's): migrations and
    the administrative commands that read across tenants or delete audit rows."""
    from pantherahive.main import resolve_admin_database_url

    _say_if_embedded()
    try:
        return resolve_admin_database_url(get_settings())
    except ValueError as exc:
        fail(str(exc))


def migrate_database(url: str) -> None:
    from pantherahive.infra.db.migrate import upgrade

    typer.secho("Migrating the database…", err=True, fg=typer.colors.BLUE)
    upgrade(url)
    typer.secho("Database is at the latest migration.", err=True, fg=typer.colors.GREEN)


def run_until_signal(work: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """Run ``work(stopping)``; SIGINT/SIGTERM set ``stopping`` (finish the event in hand)."""

    async def runner() -> T:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        return await work(stopping)

    return asyncio.run(runner())


def fail(message: str) -> NoReturn:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(code=1)


def fail_with(headline: str, exc: Exception) -> NoReturn:
    """Say what was wrong, one "field: message" line per problem — not pydantic's dump
    with its documentation URLs, nor a traceback."""
    from pydantic import ValidationError

    from pantherahive.core.errors import AppError

    lines = [headline]
    if isinstance(exc, ValidationError):
        for error in exc.errors(include_url=False):
            field = ".".join(str(part) for part in error["loc"]) or "input"
            lines.append(f"  {field}: {error['msg']}")
    elif isinstance(exc, AppError):
        lines.append(f"  {exc.detail}")
        lines.extend(f"  {e.field}: {e.message}" for e in exc.errors)
    else:
        lines.append(f"  {exc}")
    fail("\n".join(lines))
