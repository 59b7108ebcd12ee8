"""The ``pantherahive`` command line."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from pantherahive.cli.audit import app as audit_app
from pantherahive.cli.bus import dead_letters_app, relay, worker
from pantherahive.cli.common import (
    admin_database_url,
    database_url,
    fail,
    fail_with,
    migrate_database,
)
from pantherahive.cli.keys import app as keys_app
from pantherahive.infra.security.principal import Role
from pantherahive.infra.security.signing_keys import SigningKeysMissing, key_ring
from pantherahive.settings import get_settings

if TYPE_CHECKING:
    from pantherahive.cli.demo import DemoWork
    from pantherahive.main import Platform

app = typer.Typer(
    name="pantherahive",
    help="PantheraHive Core Platform: serve the API, migrate the database, manage tenants.",
    no_args_is_help=True,
    add_completion=False,
)
T = TypeVar("T")


@app.callback()
def _valid_settings() -> None:
    """Refused settings (production without a signing-key directory, a short secret, …)
    stop every command with one line per problem naming the variable, not a traceback
    that would print the settings' values."""
    from pydantic import ValidationError

    try:
        get_settings()
    except ValidationError as exc:
        fail_with("PantheraHive cannot start with these settings:", exc)


@app.command()
def migrate() -> None:
    """Apply every pending database migration (as the owner: DATABASE_ADMIN_URL), then exit."""
    migrate_database(admin_database_url())


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (PANTHERAHIVE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (PANTHERAHIVE_PORT).")] = None,
    workers: Annotated[
        int | None, typer.Option(help="API processes (PANTHERAHIVE_WORKERS).")
    ] = None,
    migrate_first: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Run migrations before serving.")
    ] = True,
) -> None:
    """Serve the HTTP API as the app login (DATABASE_URL; migrating first as the owner,
    DATABASE_ADMIN_URL), starting the embedded PostgreSQL when neither is set."""
    import uvicorn

    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.workers
    try:
        settings.refuse_unshared_rate_limits(workers)
    except ValueError as exc:
        fail(str(exc))
    _require_free_port(host, port)
    if migrate_first:
        migrate_database(admin_database_url())
    # The workers read the app login's URL from the environment; the owner's is not theirs.
    os.environ["DATABASE_URL"] = database_url()
    os.environ.pop("DATABASE_ADMIN_URL", None)
    os.environ.pop("PANTHERAHIVE_DATABASE_ADMIN_URL", None)
    # Create the generated secret and first signing key (development) here, once, before
    # the workers start: they then all read the same files instead of racing to create
    # them. In production a missing key ring stops the start here, with its reason.
    settings.resolved_secret_key()
    try:
        key_ring(settings)
    except SigningKeysMissing as exc:
        fail(str(exc))
    if workers > 1:
        metrics_dir = settings.data_path / "metrics"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        for stale in metrics_dir.glob("*.db"):
            stale.unlink()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    base = f"http://{host}:{port}"
    typer.secho(f"\nPantheraHive is starting at {base}", fg=typer.colors.GREEN, bold=True)
    typer.echo(f"  API docs:   {base}/docs   {base}/redoc   (OpenAPI: {base}/openapi.json)")
    typer.echo(f"  Events:     {base}/asyncapi.json   (AsyncAPI 3.0)")
    typer.echo(f"  Health:     {base}/healthz  {base}/readyz  {base}/metrics")
    typer.echo("  Log in:     create a tenant with POST /v1/tenants (see README), or run")
    typer.echo("              `.venv/bin/pantherahive demo` for a ready tenant and users,")
    typer.echo('              then POST /v1/auth/login {"tenant","login","password"}.\n')
    # uvicorn re-raises the signal that stopped it once it has shut down; SIGTERM's default
    # action would then kill the process before exit hooks run and leave the embedded
    # PostgreSQL running. As an exit, the hooks stop it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        "pantherahive.main:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level,
        access_log=False,
        proxy_headers=True,
        server_header=False,
    )


def _require_free_port(host: str, port: int) -> None:
    """Say so before anything starts (the embedded PostgreSQL, migrations) when the address
    is taken, instead of a bind error from uvicorn after the banner."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            # as uvicorn binds: a port in TIME_WAIT is free, a listening one is not
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        typer.secho(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}. Another program (or "
            "another PantheraHive) may be using it: choose another port with "
            "PANTHERAHIVE_PORT=… (or --port), or another interface with PANTHERAHIVE_HOST.",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(2) from exc


def _run_with_platform(work: Callable[..., Awaitable[T]]) -> T:
    from pantherahive.main import build_platform

    migrate_database(admin_database_url())
    url = database_url()
    settings = get_settings()

    async def runner() -> T:
        platform = build_platform(settings, url)
        try:
            return await work(platform)
        finally:
            await platform.db.dispose()

    return asyncio.run(runner())


@app.command("create-tenant")
def create_tenant(
    # Rich reads [...] as markup: escaped, or the pattern vanishes from --help.
    slug: Annotated[
        str,
        typer.Argument(
            help="URL-safe id: \\[a-z0-9-]{3,63} (lowercase letters, digits and hyphens)."
        ),
    ],
    name: Annotated[str | None, typer.Option(help="Display name (defaults to the slug).")] = None,
    admin_username: Annotated[str, typer.Option(help="The first ADMIN's username.")] = "admin",
    admin_email: Annotated[
        str | None,
        typer.Option(help="The first ADMIN's email (required if email verification is on)."),
    ] = None,
) -> None:
    """Create a tenant with its first ADMIN and print that ADMIN's password (shown once).

    Works whether or not self-service sign-up (POST /v1/tenants) is open: with
    PANTHERAHIVE_SIGNUP_OPEN=false this is how tenants are made.
    """
    from pydantic import ValidationError

    from pantherahive.core.errors import AppError
    from pantherahive.domains.identity.cli_ops import create_tenant as op

    password = secrets.token_urlsafe(15)
    try:
        _run_with_platform(
            lambda p: op(
                p.db,
                p.identity,
                slug=slug,
                name=name or slug,
                username=admin_username,
                email=admin_email,
                password=password,
            )
        )
    except (AppError, ValidationError) as exc:
        fail_with(f"Could not create tenant {slug!r}:", exc)
    typer.secho(f"Tenant {slug!r} created.", fg=typer.colors.GREEN)
    typer.echo(
        f"  login:    {admin_username}\n  password: {password}\n  (shown once; store it now)"
    )


@app.command("create-user")
def create_user(
    tenant: Annotated[str, typer.Argument(help="The tenant's slug.")],
    username: Annotated[str, typer.Argument(help="Username, unique in the tenant.")],
    role: Annotated[
        Role, typer.Option(case_sensitive=False, help="ADMIN, MANAGER or MEMBER (any case).")
    ] = Role.MEMBER,
    email: Annotated[str | None, typer.Option(help="Email, unique in the tenant.")] = None,
    password: Annotated[
        str | None, typer.Option(help="Password (8..64); generated and printed if omitted.")
    ] = None,
) -> None:
    """Add a user to an existing tenant."""
    from pydantic import ValidationError

    from pantherahive.core.errors import AppError
    from pantherahive.domains.identity.cli_ops import create_user as op

    chosen = password or secrets.token_urlsafe(15)
    try:
        _run_with_platform(
            lambda p: op(
                p.db,
                p.identity,
                tenant=tenant,
                username=username,
                role=role.value,
                email=email,
                password=chosen,
            )
        )
    except (AppError, ValidationError) as exc:
        fail_with(f"Could not create user {username!r}:", exc)
    typer.secho(f"User {username!r} created in {tenant!r} as {role.value}.", fg=typer.colors.GREEN)
    if password is None:
        typer.echo(f"  password: {chosen}  (shown once)")


@app.command()
def demo() -> None:
    """Create the tenant 'demo' with an ADMIN, a MANAGER and a MEMBER, two projects with
    members and 30 tasks (assignees, labels, due dates, dependency chains, one blocked
    task), for trying the API. Running it again changes nothing."""
    from datetime import date

    from pantherahive.cli.demo import seed_work
    from pantherahive.domains.identity.cli_ops import DEMO_PASSWORD, DEMO_USERS, create_demo

    async def work(platform: Platform) -> tuple[bool, DemoWork]:
        created = await create_demo(platform.db, platform.identity)
        return created, await seed_work(platform.db, "demo", today=date.today())

    created, seeded = _run_with_platform(work)
    if not created:
        typer.secho(
            "The tenant 'demo' already exists; its users are unchanged.", fg=typer.colors.YELLOW
        )
    else:
        typer.secho("Tenant 'demo' created.", fg=typer.colors.GREEN)
    if seeded.created:
        typer.secho(
            "Projects 'Website relaunch' and 'Mobile app beta' created with 30 tasks.",
            fg=typer.colors.GREEN,
        )
    else:
        typer.echo("Its demo projects are there already; nothing was added.")
    typer.echo("Users (password for all: " + DEMO_PASSWORD + "):")
    for username, role in DEMO_USERS:
        typer.echo(f"  {username:<8} {role}")
    for line in demo_commands(seeded):
        typer.echo(line)


def demo_commands(seeded: DemoWork) -> list[str]:
    """A login that keeps alice's token in $TOKEN, then the three things to look at."""
    from pantherahive.domains.identity.cli_ops import DEMO_PASSWORD

    settings = get_settings()
    base = f"http://{settings.host}:{settings.port}"
    bearer = '-H "Authorization: Bearer $TOKEN"'
    login = (
        f"TOKEN=$(curl -s -X POST {base}/v1/auth/login -H 'Content-Type: application/json' "
        f'-d \'{{"tenant":"demo","login":"alice","password":"{DEMO_PASSWORD}"}}\' '
        "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"accessToken\"])')"
    )
    lines = [
        f"\nWith the server running (`pantherahive serve`), log in as alice:\n  {login}",
        "\nThe schedule of 'Website relaunch' (dependency order, critical path):",
        f"  curl -s {bearer} {base}/v1/projects/{seeded.project_ids[0]}/schedule",
        "\nThe live notification stream (leave it open, change a task in another terminal):",
        f"  curl -N {bearer} {base}/v1/notifications/stream",
        "\nThe audit trail, newest first:",
        f"  curl -s {bearer} '{base}/v1/audit-events?limit=20'",
    ]
    if seeded.blocked_task_id is not None:
        lines.append(
            f"\nThe blocked task (waiting for the visual design): {seeded.blocked_task_id}"
        )
    return lines


# The command groups, after this module's own commands (the order --help lists them in).
app.add_typer(audit_app, name="audit")
app.command()(relay)
app.command()(worker)
app.add_typer(dead_letters_app, name="dead-letters")
app.add_typer(keys_app, name="keys")


def _register_asyncapi() -> None:
    from pantherahive.cli.asyncapi import register

    register(app)


_register_asyncapi()


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
