"""Archival to a local directory and to an S3-compatible server (moto, server mode):
segments + manifests written and read back before rows go, verify spanning archive and
live rows, restore of a range."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import orjson
import pytest

from pantherahive.domains.audit.api import ArchiveConfig, ArchiveStore, AuditService
from pantherahive.domains.audit.archival import ArchiveError, archive_before, restore_range
from pantherahive.domains.audit.handlers import CONSUMERS
from pantherahive.infra.bus.embedded import drain
from pantherahive.infra.db.engine import Database, set_tenant
from tests.conftest import TenantHandle
from tests.domains.audit.helpers import (
    DISABLE_TRIGGER,
    ENABLE_TRIGGER,
    app_db,
    make_event,
    owner,
    record,
)
from tests.support.servers import free_port

START = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    ).create_bucket(Bucket="audit-archive")
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
async def owner_db(database_url: str) -> AsyncIterator[Database]:
    db = Database.connect(database_url, pool_size=2, max_overflow=0)
    try:
        yield db
    finally:
        await db.dispose()


def local_store(tmp_path: Path) -> ArchiveStore:
    return ArchiveStore(ArchiveConfig(url=str(tmp_path / "archive"), segment_events=10))


def s3_store(endpoint: str) -> ArchiveStore:
    return ArchiveStore(ArchiveConfig(
        url=f"s3://audit-archive/run-{uuid4().hex[:8]}", segment_events=10,
        s3_endpoint=endpoint, s3_access_key_id="testing", s3_secret_access_key="testing",
        s3_allow_http=True,
    ))


async def seed(client: httpx.AsyncClient, tenant_id: UUID) -> None:
    """25 events one day apart from 2020-01-01, then 5 recent ones: 30 in all."""
    old = [make_event(tenant_id, occurred_at=START + timedelta(days=i)) for i in range(25)]
    await record(app_db(client), *old, *[make_event(tenant_id) for _ in range(5)])


async def verify(client: httpx.AsyncClient, store: ArchiveStore, tenant_id: UUID
                 ) -> tuple[bool, int, int | None]:
    async with app_db(client).sessions() as session, session.begin():
        await set_tenant(session, tenant_id)
        result = await AuditService(store).verify_tenant(session, tenant_id)
    return result.ok, result.checked, result.first_broken_seq


async def live_seqs(database_url: str, tenant_id: UUID) -> list[int]:
    async with owner(database_url) as conn:
        rows = await conn.fetch(
            "SELECT seq FROM audit.audit_events WHERE tenant_id = $1 ORDER BY seq", tenant_id
        )
    return [row["seq"] for row in rows]


async def archive_verify_restore(
    client: httpx.AsyncClient, database_url: str, owner_db: Database, store: ArchiveStore
) -> UUID:
    tenant_id = uuid4()
    await seed(client, tenant_id)
    cutoff = START + timedelta(days=20)  # events of days 0..19: seq 1..20
    segments = await archive_before(owner_db.sessions, store, before=cutoff, tenant_id=tenant_id)
    assert [(s.first_seq, s.last_seq, s.count) for s in segments] == [(1, 10, 10), (11, 20, 10)]
    assert await live_seqs(database_url, tenant_id) == list(range(21, 31))

    manifest = json.loads(await store.get(segments[1].path.replace(".ndjson.gz",
                                                                    ".manifest.json")))
    blob = await store.get(segments[1].path)
    lines = [json.loads(line) for line in gzip.decompress(blob).splitlines()]
    assert manifest["firstSeq"] == 11
    assert manifest["lastSeq"] == 20
    assert manifest["count"] == 10
    assert manifest["sha256"] == hashlib.sha256(blob).hexdigest()
    assert manifest["firstHash"] == lines[0]["hash"]
    assert manifest["lastHash"] == lines[-1]["hash"]
    assert [line["seq"] for line in lines] == list(range(11, 21))

    # Nothing more is old enough; a second run archives nothing and deletes nothing.
    again = await archive_before(owner_db.sessions, store, before=cutoff, tenant_id=tenant_id)
    assert again == []
    assert await verify(client, store, tenant_id) == (True, 30, None)

    added = await restore_range(owner_db.sessions, store, tenant_id=tenant_id,
                                from_seq=8, to_seq=13)
    assert added == 6
    async with owner(database_url) as conn:
        restored = await conn.fetch(
            "SELECT seq, hash FROM audit.restored_events WHERE tenant_id = $1 ORDER BY seq",
            tenant_id,
        )
    assert [row["seq"] for row in restored] == [8, 9, 10, 11, 12, 13]
    assert restored[3]["hash"] == lines[0]["hash"]
    return tenant_id


async def test_archive_verify_restore_on_a_local_directory(
    client: httpx.AsyncClient, database_url: str, owner_db: Database, tmp_path: Path
) -> None:
    store = local_store(tmp_path)
    tenant_id = await archive_verify_restore(client, database_url, owner_db, store)
    files = sorted(p.name for p in (tmp_path / "archive" / str(tenant_id)).iterdir())
    assert files == [
        "00000000000000000001-00000000000000000010.manifest.json",
        "00000000000000000001-00000000000000000010.ndjson.gz",
        "00000000000000000011-00000000000000000020.manifest.json",
        "00000000000000000011-00000000000000000020.ndjson.gz",
    ]
    # A corrupted segment breaks the chain where it starts.
    segment = tmp_path / "archive" / str(tenant_id) / files[3]
    documents = [orjson.loads(line) for line in gzip.decompress(segment.read_bytes()).splitlines()]
    documents[4]["changes"] = {"title": ["old", "forged"]}
    segment.write_bytes(gzip.compress(b"".join(orjson.dumps(d) + b"\n" for d in documents)))
    assert await verify(client, store, tenant_id) == (False, 10, 11)
    with pytest.raises(ArchiveError):
        await restore_range(owner_db.sessions, store, tenant_id=tenant_id,
                            from_seq=11, to_seq=12)


async def test_archive_verify_restore_on_s3(
    client: httpx.AsyncClient, database_url: str, owner_db: Database, s3_endpoint: str
) -> None:
    store = s3_store(s3_endpoint)
    tenant_id = await archive_verify_restore(client, database_url, owner_db, store)
    # A missing object breaks the chain at its segment.
    wrong = ArchiveStore(ArchiveConfig(
        url="s3://audit-archive/elsewhere", s3_endpoint=s3_endpoint,
        s3_access_key_id="testing", s3_secret_access_key="testing", s3_allow_http=True,
    ))
    assert await verify(client, wrong, tenant_id) == (False, 0, 1)


async def test_archive_refuses_a_broken_chain_and_keeps_the_rows(
    client: httpx.AsyncClient, database_url: str, owner_db: Database, tmp_path: Path
) -> None:
    tenant_id = uuid4()
    await seed(client, tenant_id)
    async with owner(database_url) as conn, conn.transaction():
        await conn.execute(DISABLE_TRIGGER)
        await conn.execute("UPDATE audit.audit_events SET ip = '10.0.0.1' "
                           "WHERE tenant_id = $1 AND seq = 3", tenant_id)
        await conn.execute(ENABLE_TRIGGER)
    with pytest.raises(ArchiveError, match="seq 3"):
        await archive_before(owner_db.sessions, local_store(tmp_path),
                             before=START + timedelta(days=20), tenant_id=tenant_id)
    assert await live_seqs(database_url, tenant_id) == list(range(1, 31))


async def test_verify_endpoint_spans_archive_and_live_rows(
    client: httpx.AsyncClient, owner_db: Database, tenant: TenantHandle
) -> None:
    platform_store: ArchiveStore = client.app.state.platform.audit.archive  # type: ignore[attr-defined]
    await drain(app_db(client), CONSUMERS)
    tenant_id = UUID(tenant.id)
    segments = await archive_before(owner_db.sessions, platform_store,
                                    before=datetime.now(UTC) + timedelta(days=1),
                                    tenant_id=tenant_id)
    assert segments, "the tenant's sign-up events should have been archived"
    archived = sum(s.count for s in segments)
    await record(app_db(client), make_event(tenant_id))
    response = await client.get("/v1/audit-events/verify", headers=tenant.admin.headers)
    body = response.json()
    assert body["ok"] is True, body
    assert body["checked"] >= archived + 1
    listed = await client.get("/v1/audit-events", headers=tenant.admin.headers)
    assert all(item["seq"] > segments[-1].last_seq for item in listed.json()["items"])


async def test_verify_a_range_across_archive_and_live_rows(
    client: httpx.AsyncClient, database_url: str, owner_db: Database, tmp_path: Path
) -> None:
    store = local_store(tmp_path)
    tenant_id = uuid4()
    await seed(client, tenant_id)
    await archive_before(owner_db.sessions, store, before=START + timedelta(days=20),
                         tenant_id=tenant_id)  # segments 1..10, 11..20; live 21..30

    async def check(from_seq: int, to_seq: int | None) -> tuple[bool, int, int | None]:
        result = await AuditService(store).verify(
            app_db(client).sessions, tenant_id, from_seq=from_seq, to_seq=to_seq)
        return result.ok, result.checked, result.first_broken_seq

    assert await check(5, 25) == (True, 21, None)  # inside a segment, across, into live
    assert await check(12, 18) == (True, 7, None)
    assert await check(26, None) == (True, 5, None)
    async with owner(database_url) as conn, conn.transaction():
        await conn.execute(DISABLE_TRIGGER)
        await conn.execute("UPDATE audit.audit_events SET ip = '10.0.0.1' "
                           "WHERE tenant_id = $1 AND seq = 23", tenant_id)
        await conn.execute(ENABLE_TRIGGER)
    assert await check(5, 25) == (False, 19, 23)
    assert await check(1, 22) == (True, 22, None)
    assert await check(24, None) == (True, 7, None)  # the link into 24 is taken as stored
    assert await check(1, None) == (False, 23, 23)
    # Rows of the range gone (the head does not cover a bounded range): still reported.
    async with owner(database_url) as conn, conn.transaction():
        await conn.execute(DISABLE_TRIGGER)
        await conn.execute("DELETE FROM audit.audit_events WHERE tenant_id = $1 AND seq >= 27",
                           tenant_id)
        await conn.execute(ENABLE_TRIGGER)
    assert await check(24, 28) == (False, 3, 27)


async def test_verify_endpoint_takes_a_range(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await drain(app_db(client), CONSUMERS)
    await record(app_db(client), *[make_event(UUID(tenant.id)) for _ in range(4)])
    headers = tenant.admin.headers
    ranged = await client.get("/v1/audit-events/verify", headers=headers,
                              params={"fromSeq": 2, "toSeq": 3})
    assert ranged.json() == {"ok": True, "checked": 2, "firstBrokenSeq": None}
    reversed_ = await client.get("/v1/audit-events/verify", headers=headers,
                                 params={"fromSeq": 3, "toSeq": 2})
    assert reversed_.status_code == 422
    assert reversed_.json()["errors"][0]["field"] == "toSeq"
