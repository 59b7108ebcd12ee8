"""Idempotent creation under concurrency, and keyset pagination that neither skips nor
repeats while other requests insert."""

from __future__ import annotations

import asyncio
import itertools

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Actor, TenantHandle, create_tenant
from tests.domains.projects.helpers import create_project


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


async def _walk_while_inserting(
    client: httpx.AsyncClient, actor: Actor, limit: int, inserts_per_page: int
) -> tuple[list[str], list[str]]:
    walked: list[str] = []
    inserted: list[str] = []
    cursor = None
    for page_number in itertools.count():
        query: dict[str, str | int] = {"limit": limit}
        if cursor:
            query["cursor"] = cursor
        # Insert alongside the first pages only, or a walk could never reach the end.
        writers = inserts_per_page if page_number < 4 else 0
        page, *new = await asyncio.gather(
            client.get("/v1/projects", headers=actor.headers, params=query),
            *[client.post("/v1/projects", headers=actor.headers, json={"name": "new"})
              for _ in range(writers)],
        )  # fmt: skip
        assert page.status_code == 200
        assert all(r.status_code == 201 for r in new)
        inserted += [r.json()["id"] for r in new]
        walked += [p["id"] for p in page.json()["items"]]
        cursor = page.json()["nextCursor"]
        if cursor is None:
            break
    return walked, inserted


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    existing=st.integers(min_value=0, max_value=8),
    limit=st.integers(min_value=1, max_value=5),
    inserts_per_page=st.integers(min_value=0, max_value=3),
)
async def test_no_skip_or_repeat_under_concurrent_inserts(
    client: httpx.AsyncClient, existing: int, limit: int, inserts_per_page: int
) -> None:
    """Every project that existed before the walk is seen exactly once; projects created
    during the walk are seen at most once."""
    tenant = await create_tenant(client)
    before = [(await create_project(client, tenant.admin))["id"] for _ in range(existing)]
    walked, inserted = await _walk_while_inserting(client, tenant.admin, limit, inserts_per_page)
    assert len(walked) == len(set(walked)), "a project was repeated"
    assert walked[: len(before)] == before, "a pre-existing project was skipped"
    assert set(walked) <= set(before) | set(inserted)
