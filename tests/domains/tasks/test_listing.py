"""Listing a project's tasks: filters, sorts, full-text search, and keyset pagination that
neither skips nor repeats a row while others are inserted (property-based)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pantherahive.core.pagination import encode_cursor
from tests.domains.tasks.helpers import World, create_project, create_task, depend

PRIORITY_ORDER = {"URGENT": 0, "HIGH": 1, "MEDIUM": 2, "LOW": 3}


async def _ids(client: httpx.AsyncClient, world: World, project_id: str,
               **params: Any) -> list[str]:
    response = await client.get(f"/v1/projects/{project_id}/tasks",
                                headers=world.viewer.headers, params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def test_filters(client: httpx.AsyncClient, world: World) -> None:
    p = await create_project(client, world.owner)
    await client.put(f"/v1/projects/{p}/members/{world.viewer.id}", headers=world.owner.headers,
                     json={"role": "VIEWER"})
    await client.put(f"/v1/projects/{p}/members/{world.editor.id}", headers=world.owner.headers,
                     json={"role": "EDITOR"})
    a = await create_task(client, world.owner, p, priority="HIGH", dueDate="2030-01-10",
                          labels=["ops"], assigneeId=world.editor.id)
    b = await create_task(client, world.owner, p, priority="LOW", dueDate="2030-01-20",
                          labels=["ops", "web"])
    c = await create_task(client, world.owner, p, status="IN_REVIEW", dependsOn=[a["id"]])
    d = await create_task(client, world.owner, p, status="CANCELLED", dueDate="2030-01-15")

    assert await _ids(client, world, p) == [a["id"], b["id"], c["id"], d["id"]]
    assert await _ids(client, world, p, status=["IN_REVIEW", "CANCELLED"]) == [c["id"], d["id"]]
    assert await _ids(client, world, p, status="TODO") == [a["id"], b["id"]]
    assert await _ids(client, world, p, assigneeId=world.editor.id) == [a["id"]]
    assert await _ids(client, world, p, priority="LOW") == [b["id"]]
    assert await _ids(client, world, p, label="ops") == [a["id"], b["id"]]
    assert await _ids(client, world, p, label="web") == [b["id"]]
    assert await _ids(client, world, p, dueAfter="2030-01-15") == [b["id"], d["id"]]
    assert await _ids(client, world, p, dueBefore="2030-01-15") == [a["id"], d["id"]]
    assert await _ids(client, world, p, dueAfter="2030-01-10", dueBefore="2030-01-10") == [a["id"]]
    assert await _ids(client, world, p, blocked="true") == [c["id"]]
    assert await _ids(client, world, p, blocked="false") == [a["id"], b["id"], d["id"]]
    assert await _ids(client, world, p, sort="dueDate") == [a["id"], d["id"], b["id"], c["id"]]
    assert (await _ids(client, world, p, sort="-priority"))[0] == a["id"]
    assert await _ids(client, world, p, sort="-createdAt") == [d["id"], c["id"], b["id"], a["id"]]
    await client.patch(f"/v1/tasks/{a['id']}", headers=world.owner.headers,
                       json={"status": "DONE"})
    assert await _ids(client, world, p, blocked="true") == []
    assert (await _ids(client, world, p, sort="updatedAt"))[-1] == a["id"]

    for bad in ({"status": "STARTED"}, {"limit": 0}, {"limit": 201}, {"sort": "title"},
                {"dueBefore": "tomorrow"}, {"blocked": "maybe"}, {"cursor": "%%%"},
                {"assigneeId": "me"}):
        response = await client.get(f"/v1/projects/{p}/tasks", headers=world.viewer.headers,
                                    params=bad)
        assert response.status_code == 422, bad
    # A cursor minted for another sort is refused, not misread.
    foreign = encode_cursor(["createdAt", "2030-01-01T00:00:00+00:00", a["id"]])
    response = await client.get(f"/v1/projects/{p}/tasks", headers=world.viewer.headers,
                                params={"sort": "-priority", "cursor": foreign})
    assert response.status_code == 422


async def test_full_text_search(client: httpx.AsyncClient, world: World) -> None:
    p = await create_project(client, world.owner)
    deploy = await create_task(client, world.owner, p, title="Deploying the new servers",
                               description="Roll out carefully")
    migrate = await create_task(client, world.owner, p, title="Database work",
                                description="Migrate the billing connections to the new cluster")
    other = await create_task(client, world.owner, p, title="Write release notes")

    async def search(q: str) -> list[str]:
        response = await client.get(f"/v1/projects/{p}/tasks", headers=world.owner.headers,
                                    params={"q": q})
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await search("deploy") == [deploy["id"]]  # stem of "Deploying"
    assert await search("server") == [deploy["id"]]  # stem of "servers"
    assert await search("migrating connection") == [migrate["id"]]  # description, both words
    assert await search("the") == []  # a stop word matches nothing
    assert await search('"billing connections"') == [migrate["id"]]  # phrase
    assert await search('"connections billing"') == []
    assert await search("deploy or release") == [deploy["id"], other["id"]]
    assert await search("cluster -billing") == []
    assert await search("cluster -servers") == [migrate["id"]]
    assert await search("nothing-like-this") == []
    for odd in ('"unterminated', "-", "!!! & | :*", "or or", "'; DROP TABLE tasks; --"):
        assert await search(odd) == [], odd  # any text is a valid web search, never a 500
    await client.patch(f"/v1/tasks/{other['id']}", headers=world.owner.headers,
                       json={"description": "deploy checklist"})
    assert await search("deploy") == [deploy["id"], other["id"]]


def _sort_key(sort: str, task: dict[str, Any]) -> tuple[Any, ...]:
    if sort in {"createdAt", "-createdAt"}:
        return (datetime.fromisoformat(task["createdAt"]), task["id"])
    if sort == "updatedAt":
        return (datetime.fromisoformat(task["updatedAt"]), task["id"])
    if sort == "dueDate":
        # No due date sorts after every date, the latest allowed one (9999-12-30) included.
        return (task["dueDate"] is None, task["dueDate"] or "", task["id"])
    return (PRIORITY_ORDER[task["priority"]], task["id"])


TASK_FIELDS = st.fixed_dictionaries({
    "priority": st.sampled_from(list(PRIORITY_ORDER)),
    "dueDate": st.one_of(st.none(), st.sampled_from(["2030-01-01", "2030-03-01", "9999-12-30"])),
})


# No shrinking: each example is a few dozen HTTP calls, and the failure report (sort, sizes,
# inserts) is small enough to read as it is.
@settings(max_examples=15, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    sort=st.sampled_from(["createdAt", "-createdAt", "dueDate", "-priority", "updatedAt"]),
    initial=st.lists(TASK_FIELDS, min_size=1, max_size=12),
    limit=st.integers(min_value=1, max_value=5),
    inserts=st.lists(st.lists(TASK_FIELDS, max_size=2), max_size=6),
)
async def test_pagination_under_concurrent_inserts(
    client: httpx.AsyncClient,
    world: World,
    sort: str,
    initial: list[dict[str, Any]],
    limit: int,
    inserts: list[list[dict[str, Any]]],
) -> None:
    """Every task that existed when paging started is seen exactly once, in sort order,
    although new tasks (with the same sort keys as old ones) arrive between and during
    page fetches."""
    project_id = await create_project(client, world.owner)
    existing = await asyncio.gather(
        *(create_task(client, world.owner, project_id, **fields) for fields in initial)
    )
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    batches = iter(inserts)
    pages = 0
    while True:
        params: dict[str, Any] = {"sort": sort, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        batch = next(batches, [])
        page, *_ = await asyncio.gather(
            client.get(f"/v1/projects/{project_id}/tasks", headers=world.owner.headers,
                       params=params),
            *(create_task(client, world.owner, project_id, **fields) for fields in batch),
        )
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= limit
        seen.extend(body["items"])
        cursor = body["nextCursor"]
        pages += 1
        assert pages < 200, "paging does not terminate"
        if cursor is None:
            break

    seen_ids = [task["id"] for task in seen]
    assert len(seen_ids) == len(set(seen_ids)), "a task was repeated"
    assert {task["id"] for task in existing} <= set(seen_ids), f"skipped ({sort}, {limit})"
    keys = [_sort_key(sort, task) for task in seen]
    expected = sorted(keys, reverse=sort.startswith("-createdAt"))
    assert keys == expected, "pages are not in sort order"


async def test_blocked_filter_follows_dependency_status(
    client: httpx.AsyncClient, world: World
) -> None:
    p = await create_project(client, world.owner)
    dep = await create_task(client, world.owner, p)
    task = await create_task(client, world.owner, p)
    assert (await depend(client, world.owner, task["id"], dep["id"])).status_code == 204
    listed = await client.get(f"/v1/projects/{p}/tasks", headers=world.owner.headers,
                              params={"blocked": "true"})
    assert [t["id"] for t in listed.json()["items"]] == [task["id"]]
    assert listed.json()["items"][0]["blocked"] is True


async def test_search_plans_agree(
    client: httpx.AsyncClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Few matches are fetched by id and sorted; many are found walking the sort index. Both
    answer the same pages."""
    from pantherahive.domains.tasks import repository

    p = await create_project(client, world.owner)
    for i in range(5):
        await create_task(client, world.owner, p, title=f"Harbour crane {i}",
                          priority=["LOW", "URGENT"][i % 2])
    await create_task(client, world.owner, p, title="Unrelated")

    async def pages(sort: str) -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            params = {"q": "cranes", "sort": sort, "limit": 2, **({"cursor": cursor} if cursor
                                                                   else {})}
            body = (await client.get(f"/v1/projects/{p}/tasks", headers=world.owner.headers,
                                     params=params)).json()
            seen += [item["id"] for item in body["items"]]
            cursor = body["nextCursor"]
            if cursor is None:
                return seen

    for sort in ("createdAt", "-priority", "-createdAt"):
        few = await pages(sort)
        monkeypatch.setattr(repository, "_FEW_MATCHES", 2)
        many = await pages(sort)
        monkeypatch.undo()
        assert len(few) == 5
        assert few == many, sort
