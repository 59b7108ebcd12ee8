"""Event backbone commands: ``relay``, ``worker``, ``dead-letters list|replay``."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from pantherahive.cli.common import admin_database_url, database_url, run_until_signal
from pantherahive.settings import Settings, get_settings

dead_letters_app = typer.Typer(
    help="Events parked after their handler kept failing: list and replay them.",
    no_args_is_help=True,
)


def _require_broker(settings: Settings) -> None:
    from pantherahive.infra.bus.from_settings import is_embedded

    if is_embedded(settings.bus_url):
        typer.secho(
            "BUS_URL is embedded: the API process runs the consumers itself "
            "(set BUS_URL=nats://… or kafka://… to use a broker).",
            err=True, fg=typer.colors.YELLOW,
        )
        raise typer.Exit(code=2)


def relay() -> None:
    """Publish the outbox to the broker of BUS_URL (nats:// or kafka://) until stopped."""
    from pantherahive.infra.bus.broker.factory import run_relay
    from pantherahive.infra.db.engine import Database

    settings = get_settings()
    _require_broker(settings)
    url = database_url()

    async def work(stopping: asyncio.Event) -> None:
        db = Database.connect(url, pool_size=2)
        try:
            await run_relay(db, settings, stopping)
        finally:
            await db.dispose()

    run_until_signal(work)


def worker() -> None:
    """Run every event consumer against the broker of BUS_URL (or, embedded, the outbox)."""
    from pantherahive.consumers import all_consumers
    from pantherahive.infra.bus.broker.factory import run_worker
    from pantherahive.infra.bus.embedded import EmbeddedRuntime
    from pantherahive.infra.bus.from_settings import is_embedded
    from pantherahive.infra.db.engine import Database

    settings = get_settings()
    url = database_url()

    async def work(stopping: asyncio.Event) -> None:
        db = Database.connect(url, pool_size=settings.db_pool_size)
        try:
            if is_embedded(settings.bus_url):
                runtime = EmbeddedRuntime.from_settings(db, settings, all_consumers())
                await runtime.start()
                await stopping.wait()
                await runtime.stop()
            else:
                await run_worker(db, settings, all_consumers(), stopping)
        finally:
            await db.dispose()

    run_until_signal(work)


@dead_letters_app.command("list")
def list_dead_letters(
    consumer: Annotated[str | None, typer.Option(help="Only this consumer.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include replayed ones.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
) -> None:
    """Parked events, oldest first: id, consumer, event, attempts and the last error."""
    from pantherahive.infra.bus.dead_letters import error_summary, list_parked
    from pantherahive.infra.db.engine import Database

    # Every tenant's dead letters: the owner reads them (the app login sees one tenant's).
    url = admin_database_url()

    async def work() -> None:
        owner = Database.connect(url, pool_size=1)
        try:
            parked = await list_parked(
                owner, consumer=consumer, include_replayed=all_, limit=limit
            )
        finally:
            await owner.dispose()
        if not parked:
            typer.echo("No parked events.")
        for letter in parked:
            state = f"replayed {letter.replayed_at:%Y-%m-%d %H:%M:%S}" if letter.replayed_at \
                else "parked"
            if letter.event is not None:
                what = f"{letter.event.type}\t{letter.event.id}\ttenant={letter.event.tenant_id}"
            else:  # a message that is not an event: no type, id or tenant to trust
                size = len(letter.payload or b"")
                what = f"(malformed)\t{size} bytes\ttenant=?"
            typer.echo(
                f"{letter.id}\t{letter.consumer}\t{what}\tattempts={letter.attempts}\t"
                f"{state}\t{error_summary(letter.error)}"
            )

    asyncio.run(work())


@dead_letters_app.command("replay")
def replay_dead_letters(
    ids: Annotated[list[int], typer.Argument(help="Dead-letter ids (from `list`).")],
) -> None:
    """Run parked events through their consumer again (each once; failures stay parked)."""
    from pantherahive.consumers import all_consumers
    from pantherahive.infra.bus.dead_letters import ReplayResult, replay
    from pantherahive.infra.db.engine import Database

    owner_url = admin_database_url()
    app_url = database_url()

    async def work() -> bool:
        owner = Database.connect(owner_url, pool_size=1)
        app = Database.connect(app_url, pool_size=2)
        ok = True
        try:
            for dead_letter_id in ids:
                result = await replay(owner, app, all_consumers(), dead_letter_id)
                ok = ok and result is ReplayResult.REPLAYED
                color = typer.colors.GREEN if result is ReplayResult.REPLAYED \
                    else typer.colors.RED
                typer.secho(f"{dead_letter_id}\t{result}", fg=color)
        finally:
            await owner.dispose()
            await app.dispose()
        return ok

    if not asyncio.run(work()):
        raise typer.Exit(code=1)
