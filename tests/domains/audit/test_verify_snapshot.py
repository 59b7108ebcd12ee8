"""`verify` (API and CLI) reads segments, live rows and the chain head from one snapshot:
an archive that commits in the middle of it cannot make a sound chain look broken.

The interleaving is deterministic: the first read of live rows first runs a real archive
of the whole chain to completion (rows deleted, segments recorded, committed). Read at READ
COMMITTED, the verification would then find no live rows behind a head that remembers
them and report seq 1 broken.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from typer.testing import CliRunner

from pantherahive.cli.main import app as cli
from pantherahive.domains.audit.api import ArchiveConfig, ArchiveStore
from pantherahive.domains.audit.archival import archive_before
from pantherahive.domains.audit.handlers import CONSUMERS
from pantherahive.domains.audit.repository import AuditRepository
from pantherahive.infra.bus.embedded import drain
from pantherahive.infra.db.engine import Database
from pantherahive.settings import get_settings
from tests.conftest import TenantHandle
from tests.domains.audit.helpers import app_db, make_event, record
from tests.support.servers import set_database_env


def archive_during_the_first_live_read(
    monkeypatch: pytest.MonkeyPatch, database_url: str, store: ArchiveStore, tenant_id: UUID
) -> list[int]:
    """Wrap the repository's live read: the first call archives every event of the tenant
    (committed) before reading. Returns a list that receives the archived count."""
    archived: list[int] = []
    real = AuditRepository.live_batch

    async def live_batch(self: AuditRepository, tenant: UUID, **kwargs: Any) -> Any:
        if tenant == tenant_id and not archived:
            owner = Database.connect(database_url, pool_size=1, max_overflow=0)
            try:
                segments = await archive_before(
                    owner.sessions, store, before=datetime.now(UTC) + timedelta(days=1),
                    tenant_id=tenant_id,
                )
            finally:
                await owner.dispose()
            archived.append(sum(segment.count for segment in segments))
        return await real(self, tenant, **kwargs)

    monkeypatch.setattr(AuditRepository, "live_batch", live_batch)
    return archived


async def test_the_verify_endpoint_is_not_fooled_by_an_archive_committing_meanwhile(
    client: httpx.AsyncClient, tenant: TenantHandle, database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant_id = UUID(tenant.id)
    await drain(app_db(client), CONSUMERS)
    await record(app_db(client), *[make_event(tenant_id) for _ in range(12)])
    store: ArchiveStore = client.app.state.platform.audit.archive  # type: ignore[attr-defined]
    archived = archive_during_the_first_live_read(monkeypatch, database_url, store, tenant_id)

    response = await client.get("/v1/audit-events/verify", headers=tenant.admin.headers)
    assert response.status_code == 200, response.text
    assert archived  # the archive really ran in between
    assert archived[0] >= 12
    body = response.json()
    assert body == {"ok": True, "checked": archived[0], "firstBrokenSeq": None}

    # Afterwards the same chain verifies from its segments.
    monkeypatch.undo()
    again = await client.get("/v1/audit-events/verify", headers=tenant.admin.headers)
    assert again.json() == body


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> Iterator[Path]:
    archive = tmp_path / "archive"
    set_database_env(monkeypatch, database_url)
    monkeypatch.setenv("PANTHERAHIVE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PANTHERAHIVE_AUDIT_ARCHIVE_URL", str(archive))
    monkeypatch.setenv("PANTHERAHIVE_AUDIT_SEGMENT_EVENTS", "5")
    get_settings.cache_clear()
    yield archive
    get_settings.cache_clear()


async def test_the_verify_command_is_not_fooled_by_an_archive_committing_meanwhile(
    client: httpx.AsyncClient, database_url: str, cli_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant_id = uuid4()
    await record(app_db(client), *[make_event(tenant_id) for _ in range(12)])
    store = ArchiveStore(ArchiveConfig(url=str(cli_env), segment_events=5))
    archived = archive_during_the_first_live_read(monkeypatch, database_url, store, tenant_id)

    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["audit", "verify", "--tenant", str(tenant_id)]
    )
    assert archived == [12]
    assert result.exit_code == 0, result.output
    assert "ok      12 events" in result.output
