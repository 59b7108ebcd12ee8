"""The hash chain: canonical form, gap-free seq under concurrency, idempotency, and
verification that pinpoints tampering."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from datetime import UTC, datetime
from uuid import UUID, uuid4

import httpx
import pytest

from pantherahive.domains.audit.api import AuditService
from pantherahive.domains.audit.chain import GENESIS_HASH, canonical, compute_hash
from pantherahive.infra.db.engine import Database, set_tenant
from tests.domains.audit.helpers import (
    DISABLE_TRIGGER,
    ENABLE_TRIGGER,
    app_db,
    make_event,
    owner,
    record,
)


async def verify(client: httpx.AsyncClient, tenant_id: UUID) -> tuple[bool, int, int | None]:
    db = app_db(client)
    service: AuditService = client.app.state.platform.audit  # type: ignore[attr-defined]
    async with db.sessions() as session, session.begin():
        await set_tenant(session, tenant_id)
        result = await service.verify_tenant(session, tenant_id)
    return result.ok, result.checked, result.first_broken_seq


async def rows(database_url: str, tenant_id: UUID) -> list[dict[str, object]]:
    async with owner(database_url) as conn:
        found = await conn.fetch(
            "SELECT * FROM audit.audit_events WHERE tenant_id = $1 ORDER BY seq", tenant_id
        )
    return [dict(row) for row in found]


def test_canonical_form_is_sorted_compact_utf8_json() -> None:
    doc = {
        "id": "7f1c7a4e-0000-4000-8000-000000000001", "seq": 1,
        "occurredAt": "2024-01-15T12:00:00.000000Z", "actorId": None, "actorType": "system",
        "action": "user.updated", "resourceType": "user", "resourceId": "u1",
        "tenantId": "7f1c7a4e-0000-4000-8000-000000000002", "requestId": "r", "ip": None,
        "changes": {"lastName": ["Müller", "Ørsted"]}, "data": {},
        "hash": "ignored", "prevHash": "ignored",
    }
    expected = json.dumps(
        {k: v for k, v in doc.items() if k not in {"hash", "prevHash"}},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    ).encode("utf-8")
    assert canonical(doc) == expected
    assert "Müller".encode() in canonical(doc)
    assert compute_hash(GENESIS_HASH, doc) == hashlib.sha256(
        GENESIS_HASH.encode() + expected
    ).hexdigest()


async def test_events_chain_with_gap_free_seq_and_valid_hashes(
    client: httpx.AsyncClient, database_url: str
) -> None:
    tenant_id = uuid4()
    actor = uuid4()
    await record(app_db(client), *[make_event(tenant_id, actor_id=actor) for _ in range(5)])
    stored = await rows(database_url, tenant_id)
    assert [row["seq"] for row in stored] == [1, 2, 3, 4, 5]
    assert stored[0]["prev_hash"] == GENESIS_HASH
    for before, after in itertools.pairwise(stored):
        assert after["prev_hash"] == before["hash"]
    assert {row["actor_type"] for row in stored} == {"user"}
    assert await verify(client, tenant_id) == (True, 5, None)


async def test_handling_an_event_twice_records_it_once(
    client: httpx.AsyncClient, database_url: str
) -> None:
    tenant_id = uuid4()
    event = make_event(tenant_id)
    await record(app_db(client), event, event, make_event(tenant_id), event)
    stored = await rows(database_url, tenant_id)
    assert [row["seq"] for row in stored] == [1, 2]
    assert stored[0]["id"] == event.id
    assert await verify(client, tenant_id) == (True, 2, None)


async def test_concurrent_events_of_one_tenant_get_consecutive_seqs(
    client: httpx.AsyncClient, database_url: str
) -> None:
    tenant_id = uuid4()
    db = app_db(client)
    events = [make_event(tenant_id) for _ in range(16)]
    await asyncio.gather(*(record(db, event) for event in events))
    stored = await rows(database_url, tenant_id)
    assert [row["seq"] for row in stored] == list(range(1, 17))
    assert {row["id"] for row in stored} == {event.id for event in events}
    assert await verify(client, tenant_id) == (True, 16, None)


async def test_tenants_have_independent_chains(
    client: httpx.AsyncClient, database_url: str
) -> None:
    first, second = uuid4(), uuid4()
    await record(app_db(client), make_event(first), make_event(second), make_event(first))
    assert [r["seq"] for r in await rows(database_url, first)] == [1, 2]
    assert [r["seq"] for r in await rows(database_url, second)] == [1]


async def test_payload_numbers_hash_as_jsonb_stores_them(client: httpx.AsyncClient) -> None:
    """jsonb rewrites 1e20 as an integer; the hash must be over what is read back."""
    tenant_id = uuid4()
    weird = {"changes": {"estimate": [1e20, 0.1], "name": ["a\u0000b"[:1], "é"]}, "n": 10**30}
    await record(app_db(client), make_event(tenant_id, data=weird))
    assert await verify(client, tenant_id) == (True, 1, None)


async def test_creation_payload_becomes_changes_from_null(client: httpx.AsyncClient) -> None:
    tenant_id = uuid4()
    event = make_event(tenant_id, "project.created", data={"name": "Apollo", "status": "ACTIVE"})
    await record(app_db(client), event)
    db: Database = app_db(client)
    service: AuditService = client.app.state.platform.audit  # type: ignore[attr-defined]
    del service
    async with db.sessions() as session, session.begin():
        await set_tenant(session, tenant_id)
        from pantherahive.domains.audit.repository import AuditRepository

        row = await AuditRepository(session).get(tenant_id, event.id)
    assert row is not None
    assert row.changes == {"name": [None, "Apollo"], "status": [None, "ACTIVE"]}
    assert row.data == {}


@pytest.mark.parametrize("column", ["changes", "resource_id", "occurred_at"])
async def test_tampering_a_row_in_sql_is_reported_at_its_seq(
    client: httpx.AsyncClient, database_url: str, column: str
) -> None:
    tenant_id = uuid4()
    await record(app_db(client), *[make_event(tenant_id) for _ in range(6)])
    new_value = {
        "changes": """'{"title": ["old", "forged"]}'::jsonb""",
        "resource_id": "'someone-else'",
        "occurred_at": "occurred_at - interval '1 second'",
    }[column]
    async with owner(database_url) as conn, conn.transaction():
        # The owner can only get past the append-only trigger by switching it off.
        await conn.execute(DISABLE_TRIGGER)
        await conn.execute(
            f"UPDATE audit.audit_events SET {column} = {new_value} "  # noqa: S608 - fixed set
            "WHERE tenant_id = $1 AND seq = 4",
            tenant_id,
        )
        await conn.execute(ENABLE_TRIGGER)
    ok, checked, broken = await verify(client, tenant_id)
    assert (ok, broken) == (False, 4)
    assert checked == 4


async def test_deleting_the_newest_rows_is_detected(
    client: httpx.AsyncClient, database_url: str
) -> None:
    tenant_id = uuid4()
    await record(app_db(client), *[make_event(tenant_id) for _ in range(4)])
    async with owner(database_url) as conn, conn.transaction():
        await conn.execute(DISABLE_TRIGGER)
        await conn.execute(
            "DELETE FROM audit.audit_events WHERE tenant_id = $1 AND seq >= 3", tenant_id
        )
        await conn.execute(ENABLE_TRIGGER)
    assert await verify(client, tenant_id) == (False, 2, 3)


async def test_missing_row_in_the_middle_is_reported_where_the_gap_starts(
    client: httpx.AsyncClient, database_url: str
) -> None:
    tenant_id = uuid4()
    await record(app_db(client), *[make_event(tenant_id) for _ in range(5)])
    async with owner(database_url) as conn, conn.transaction():
        await conn.execute(DISABLE_TRIGGER)
        await conn.execute(
            "DELETE FROM audit.audit_events WHERE tenant_id = $1 AND seq = 2", tenant_id
        )
        await conn.execute(ENABLE_TRIGGER)
    ok, _checked, broken = await verify(client, tenant_id)
    assert (ok, broken) == (False, 2)


def test_timestamps_hash_with_microseconds() -> None:
    moment = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
    from pantherahive.domains.audit.chain import format_timestamp

    assert format_timestamp(moment) == "2024-01-15T12:00:00.000000Z"
