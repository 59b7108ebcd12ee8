"""Idempotent creation under concurrency, and keyset pagination that neither skips nor
repeats while other requests insert."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import Actor, TenantHandle, create_tenant
from tests.domains.projects.helpers import create_project
from tests.support.db import database_url
from tests.support.servers import owner_connection


async def _all_ids(
    client: httpx.AsyncClient, actor: Actor, limit: int = 200, **params: str
) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        query: dict[str, str | int] = {"limit": limit, **params}
        if cursor:
            query["cursor"] = cursor
        response = await client.get("/v1/projects", headers=actor.headers, params=query)
        assert response.status_code == 200, response.text
        ids += [p["id"] for p in response.json()["items"]]
        cursor = response.json()["nextCursor"]
        if cursor is None:
            return ids


async def test_twenty_concurrent_creations_with_one_key_create_one_project(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    manager = tenant.users["MANAGER"]
    headers = manager.headers | {"Idempotency-Key": "create-apollo-1"}
    body = {"name": "Apollo", "description": "to the moon"}

    responses = await asyncio.gather(
        *[client.post("/v1/projects", headers=headers, json=body) for _ in range(20)]
    )

    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    assert {r.content for r in responses} == {responses[0].content}  # the same body
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 19
    assert await _all_ids(client, manager) == list(ids)

    # after the fact: a repeat replays, a different body with the same key is refused
    replay = await client.post("/v1/projects", headers=headers, json=body)
    assert replay.status_code == 201
    assert replay.json()["id"] in ids
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers["etag"] == '"1"'
    different = await client.post("/v1/projects", headers=headers, json={"name": "Gemini"})
    assert different.status_code == 422
    assert await _all_ids(client, manager) == list(ids)

    # keys are scoped to the user: another user's identical key is a new request
    admin = tenant.admin
    theirs = await client.post(
        "/v1/projects", headers=admin.headers | {"Idempotency-Key": "create-apollo-1"}, json=body
    )
    assert theirs.status_code == 201
    assert theirs.json()["id"] not in ids


async def test_pagination_walk_returns_each_project_once(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    admin = tenant.admin
    created = [(await create_project(client, admin, name=f"p{i:02}"))["id"] for i in range(23)]
    for limit in (1, 4, 7, 23, 50):
        walked = await _all_ids(client, admin, limit=limit)
        assert walked == created, limit  # oldest first, each exactly once
    assert await _all_ids(client, admin, limit=3, q="p1") == created[10:20]


BASE = datetime(2020, 1, 1, tzinfo=UTC)
Key = tuple[datetime, UUID]


async def _insert(conn: asyncpg.Connection, tenant: TenantHandle, buckets: list[int]
                  ) -> dict[str, Key]:
    """Projects created "at" BASE + bucket seconds (few buckets, so many share a
    created_at), written as the owner the way a concurrent request commits them."""
    rows: dict[str, Key] = {}
    async with conn.transaction():
        for bucket in buckets:
            project_id, created_at = uuid4(), BASE + timedelta(seconds=bucket)
            await conn.execute(
                "INSERT INTO projects.projects (id, tenant_id, name, owner_id, status, "
                "version, created_at, updated_at) VALUES ($1, $2, $3, $4, 'ACTIVE', 1, $5, $5)",
                project_id, UUID(tenant.id), f"p{bucket}", UUID(tenant.admin.id), created_at)
            await conn.execute(
                "INSERT INTO projects.members (project_id, user_id, tenant_id, role, added_at) "
                "VALUES ($1, $2, $3, 'OWNER', $4)",
                project_id, UUID(tenant.admin.id), UUID(tenant.id), created_at)
            rows[str(project_id)] = (created_at, project_id)
    return rows


def _key(item: dict[str, Any]) -> Key:
    return datetime.fromisoformat(item["createdAt"]), UUID(item["id"])


BUCKETS = st.integers(min_value=0, max_value=3)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    existing=st.lists(BUCKETS, max_size=10),
    limit=st.integers(min_value=1, max_value=4),
    inserts=st.lists(st.lists(BUCKETS, max_size=3), max_size=5),
)
# Ties on a page boundary: without the id tie-break the walk skips the rest of the tie.
@example(existing=[0, 0, 0], limit=1, inserts=[])
# Rows landing before, inside and after the cursor's position while paging.
@example(existing=[1, 1, 2, 2], limit=1, inserts=[[0, 3], [1, 2, 3], [0, 1]])
async def test_no_skip_or_repeat_under_concurrent_inserts(
    client: httpx.AsyncClient, existing: list[int], limit: int, inserts: list[list[int]]
) -> None:
    """Walking the list while projects are inserted before, at and after the cursor's
    position (same created_at as rows already paged included): every project that existed
    before the walk is seen exactly once, in (createdAt, id) order; one inserted after the
    position the walk had reached is seen; one inserted before the page being read is not."""
    tenant = await create_tenant(client)
    conn = await owner_connection(database_url())
    try:
        before = await _insert(conn, tenant, existing)
        inserted: dict[str, Key] = {}
        walked: list[dict[str, Any]] = []
        must_see: set[str] = set()
        must_not_see: set[str] = set()
        cursor: str | None = None
        reached: Key | None = None  # the key of the last project already walked
        for page_number in itertools.count():
            query: dict[str, str | int] = {"limit": limit, **({"cursor": cursor} if cursor
                                                               else {})}
            batch = inserts[page_number] if page_number < len(inserts) else []
            page, new = await asyncio.gather(
                client.get("/v1/projects", headers=tenant.admin.headers, params=query),
                _insert(conn, tenant, batch),
            )
            assert page.status_code == 200, page.text
            items = page.json()["items"]
            assert len(items) <= limit
            walked += items
            cursor = page.json()["nextCursor"]
            inserted |= new
            if reached is not None:
                must_not_see |= {pid for pid, key in new.items() if key < reached}
            reached = _key(walked[-1]) if walked else reached
            if cursor is not None and reached is not None:
                must_see |= {pid for pid, key in new.items() if key > reached}
            if cursor is None:
                break
            assert page_number < 100, "paging does not terminate"
    finally:
        await conn.close()

    ids = [item["id"] for item in walked]
    assert len(ids) == len(set(ids)), "a project was repeated"
    assert set(before) <= set(ids), "a project that existed before the walk was skipped"
    assert set(ids) <= set(before) | set(inserted)
    keys = [_key(item) for item in walked]
    assert keys == sorted(keys), "pages are not in (createdAt, id) order"
    assert must_see <= set(ids), "a project inserted after the walk's position was skipped"
    assert not must_not_see & set(ids), "a project inserted behind the cursor was walked"
