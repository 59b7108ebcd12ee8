"""`pantherahive audit verify|archive|restore` end to end, as an operator runs them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from typer.testing import CliRunner, Result

from pantherahive.cli.main import app
from pantherahive.settings import get_settings
from tests.domains.audit.helpers import (
    DISABLE_TRIGGER,
    ENABLE_TRIGGER,
    app_db,
    make_event,
    owner,
    record,
)
from tests.support.servers import set_database_env


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path
) -> Iterator[Path]:
    archive = tmp_path / "archive"
    set_database_env(monkeypatch, database_url)
    monkeypatch.setenv("PANTHERAHIVE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PANTHERAHIVE_AUDIT_ARCHIVE_URL", str(archive))
    monkeypatch.setenv("PANTHERAHIVE_AUDIT_SEGMENT_EVENTS", "4")
    get_settings.cache_clear()
    yield archive
    get_settings.cache_clear()


async def run(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, ["audit", *args])


async def test_archive_verify_restore_commands(
    client: httpx.AsyncClient, database_url: str, cli_env: Path
) -> None:
    tenant_id = uuid4()
    start = datetime(2019, 6, 1, tzinfo=UTC)
    await record(app_db(client),
                 *[make_event(tenant_id, occurred_at=start + timedelta(days=i)) for i in range(6)],
                 make_event(tenant_id))

    archived = await run("archive", "--before", "2019-06-06", "--tenant", str(tenant_id))
    assert archived.exit_code == 0, archived.output
    assert "seq 1..4" in archived.output
    assert "seq 5..5" in archived.output
    assert len(list((cli_env / str(tenant_id)).glob("*.ndjson.gz"))) == 2

    verified = await run("verify", "--tenant", str(tenant_id))
    assert verified.exit_code == 0, verified.output
    assert "ok" in verified.output
    assert "7 events" in verified.output

    restored = await run("restore", "--tenant", str(tenant_id), "--from-seq", "2",
                         "--to-seq", "5")
    assert restored.exit_code == 0, restored.output
    assert "4 event(s) restored" in restored.output

    async with owner(database_url) as conn, conn.transaction():
        await conn.execute(DISABLE_TRIGGER)
        await conn.execute("UPDATE audit.audit_events SET action = 'forged' "
                           "WHERE tenant_id = $1 AND seq = 6", tenant_id)
        await conn.execute(ENABLE_TRIGGER)
    broken = await run("verify", "--tenant", str(tenant_id))
    assert broken.exit_code == 1
    assert "BROKEN" in broken.output
    assert "at seq 6" in broken.output

    bad_date = await run("archive", "--before", "June", "--tenant", str(tenant_id))
    assert bad_date.exit_code != 0
