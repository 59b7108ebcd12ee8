"""``pantherahive audit``: verify the hash chains, archive old events, restore a range.

These run as the database owner (``DATABASE_ADMIN_URL``), outside the API: they read every
tenant's chain, and archival is the one operation allowed to delete audit rows, and only
what it has stored and read back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Annotated, TypeVar
from uuid import UUID

import typer

if TYPE_CHECKING:
    from pantherahive.domains.audit.api import ArchiveStore
    from pantherahive.domains.audit.archival import ArchivedSegment
    from pantherahive.domains.audit.schemas import ChainVerification
    from pantherahive.infra.db.engine import Database

T = TypeVar("T")

app = typer.Typer(
    name="audit",
    help="The audit trail: verify hash chains, archive old events, restore archived ranges.",
    no_args_is_help=True,
)


def _run(work: Callable[[Database, ArchiveStore], Awaitable[T]]) -> T:
    """Run ``work(owner_db, store)`` against the migrated database, as its owner."""
    from pantherahive.cli.common import admin_database_url, migrate_database
    from pantherahive.domains.audit.api import ArchiveStore
    from pantherahive.infra.db.engine import Database
    from pantherahive.main import audit_archive_config
    from pantherahive.settings import get_settings

    url = admin_database_url()
    migrate_database(url)
    store = ArchiveStore(audit_archive_config(get_settings()))

    async def runner() -> T:
        db = Database.connect(url, pool_size=2, max_overflow=0)
        try:
            return await work(db, store)
        finally:
            await db.dispose()

    return asyncio.run(runner())


async def _tenant_id(db: Database, tenant: str) -> UUID:
    """A tenant id, or a slug resolved through identity's own lookup function."""
    from sqlalchemy import text

    try:
        return UUID(tenant)
    except ValueError:
        async with db.sessions() as session:
            found = (
                await session.execute(text("SELECT identity.tenant_id_for_slug(:s)"), {"s": tenant})
            ).scalar()
    if found is None:
        typer.secho(f"No tenant {tenant!r}.", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2)
    return UUID(str(found))


TenantOption = Annotated[
    str | None, typer.Option("--tenant", help="Tenant id or slug (default: every tenant).")
]


@app.command()
def verify(tenant: TenantOption = None) -> None:
    """Re-compute every tenant's chain (archived segments and live rows); exit 1 if any
    chain is broken."""
    from pantherahive.domains.audit.repository import AuditRepository
    from pantherahive.infra.db.engine import set_tenant

    async def work(db: Database, store: ArchiveStore) -> list[tuple[UUID, ChainVerification]]:
        from pantherahive.domains.audit.api import AuditService, read_snapshot

        service = AuditService(store)
        ids = [await _tenant_id(db, tenant)] if tenant else None
        results: list[tuple[UUID, ChainVerification]] = []
        async with db.sessions() as session, session.begin():
            # One snapshot for every tenant: an archive running meanwhile cannot make a
            # sound chain look broken (rows moving from live to archived between reads).
            await read_snapshot(session)
            ids = ids or await AuditRepository(session).tenants_with_events()
            for tenant_id in ids:
                await set_tenant(session, tenant_id)
                results.append((tenant_id, await service.verify_tenant(session, tenant_id)))
        return results

    broken = 0
    for tenant_id, result in _run(work):
        if result.ok:
            typer.echo(f"{tenant_id}  ok      {result.checked} events")
        else:
            broken += 1
            typer.secho(
                f"{tenant_id}  BROKEN  at seq {result.first_broken_seq} "
                f"({result.checked} events examined)",
                fg=typer.colors.RED,
            )
    if broken:
        raise typer.Exit(code=1)


@app.command()
def archive(
    before: Annotated[
        str | None,
        typer.Option(help="Archive events that happened before this date (YYYY-MM-DD, UTC); "
                          "default: now minus PANTHERAHIVE_AUDIT_RETENTION_DAYS."),
    ] = None,
    tenant: TenantOption = None,
) -> None:
    """Move old audit events into gzip NDJSON segments with manifests in the archive
    (PANTHERAHIVE_AUDIT_ARCHIVE_URL); rows are deleted only after the stored copy is
    read back and verified."""
    from pantherahive.domains.audit.archival import ArchiveError, archive_before

    async def work(db: Database, store: ArchiveStore) -> list[ArchivedSegment]:
        cutoff = _cutoff(before, store.config.retention_days)
        tenant_id = await _tenant_id(db, tenant) if tenant else None
        return await archive_before(db.sessions, store, before=cutoff, tenant_id=tenant_id)

    try:
        segments = _run(work)
    except ArchiveError as exc:
        typer.secho(f"Archive stopped: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1) from exc
    for segment in segments:
        typer.echo(
            f"{segment.tenant_id}  seq {segment.first_seq}..{segment.last_seq}  "
            f"{segment.count} events  -> {segment.path}"
        )
    typer.secho(f"{len(segments)} segment(s) archived.", fg=typer.colors.GREEN)


@app.command()
def restore(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id or slug.")],
    from_seq: Annotated[int, typer.Option("--from-seq", min=1)],
    to_seq: Annotated[int, typer.Option("--to-seq", min=1)],
) -> None:
    """Copy archived events FROM..TO (verified) into audit.restored_events for
    investigation; the live chain is not touched."""
    from pantherahive.domains.audit.archival import ArchiveError, restore_range

    if to_seq < from_seq:
        typer.secho("--to-seq must not be below --from-seq.", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2)

    async def work(db: Database, store: ArchiveStore) -> int:
        tenant_id = await _tenant_id(db, tenant)
        return await restore_range(
            db.sessions, store, tenant_id=tenant_id, from_seq=from_seq, to_seq=to_seq
        )

    try:
        added = _run(work)
    except ArchiveError as exc:
        typer.secho(f"Restore stopped: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1) from exc
    typer.secho(f"{added} event(s) restored into audit.restored_events.", fg=typer.colors.GREEN)


def _cutoff(before: str | None, retention_days: int) -> datetime:
    if before is None:
        return datetime.now(UTC) - timedelta(days=retention_days)
    try:
        return datetime.combine(date.fromisoformat(before), time(), tzinfo=UTC)
    except ValueError as exc:
        raise typer.BadParameter("use YYYY-MM-DD", param_hint="--before") from exc
