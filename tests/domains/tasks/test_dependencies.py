"""The dependency graph: same-project edges only, no cycles (also under concurrency), and
the schedule computed from it."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from pantherahive.domains.tasks import service
from pantherahive.domains.tasks.schemas import TaskStatus, TaskUpdate
from pantherahive.infra.db.engine import set_tenant
from pantherahive.infra.security.principal import AuthContext, Role
from tests.domains.tasks.helpers import World, create_project, create_task, depend, outbox
from tests.support.db import database_url
from tests.support.servers import owner_connection


async def test_edge_rules(client: httpx.AsyncClient, world: World) -> None:
    a = await create_task(client, world.owner, world.project_id)
    b = await create_task(client, world.owner, world.project_id)
    elsewhere = await create_task(client, world.owner, await create_project(client, world.owner))

    assert (await depend(client, world.editor, a["id"], a["id"])).status_code == 422
    assert (await depend(client, world.editor, a["id"], elsewhere["id"])).status_code == 422
    assert (await depend(client, world.editor, a["id"], str(uuid.uuid4()))).status_code == 404
    assert (await depend(client, world.editor, a["id"], b["id"])).status_code == 204
    assert (await depend(client, world.editor, a["id"], b["id"])).status_code == 204  # idempotent

    fetched = (await client.get(f"/v1/tasks/{a['id']}", headers=world.viewer.headers)).json()
    assert (fetched["dependsOn"], fetched["blocked"]) == ([b["id"]], True)
    added = [e for e in await outbox(client, world.tenant.id, subject_id=a["id"])
             if e["type"] == "task.dependency_added"]
    assert [e["data"]["dependsOnId"] for e in added] == [b["id"]]

    path = f"/v1/tasks/{a['id']}/dependencies/{b['id']}"
    assert (await client.delete(path, headers=world.editor.headers)).status_code == 204
    assert (await client.delete(path, headers=world.editor.headers)).status_code == 404
    fetched = (await client.get(f"/v1/tasks/{a['id']}", headers=world.viewer.headers)).json()
    assert (fetched["dependsOn"], fetched["blocked"]) == ([], False)
    types = [e["type"] for e in await outbox(client, world.tenant.id, subject_id=a["id"])]
    assert types[-1] == "task.dependency_removed"


async def test_two_cycle_is_refused_and_named(client: httpx.AsyncClient, world: World) -> None:
    a = await create_task(client, world.owner, world.project_id)
    b = await create_task(client, world.owner, world.project_id)
    assert (await depend(client, world.owner, a["id"], b["id"])).status_code == 204
    refused = await depend(client, world.owner, b["id"], a["id"])
    assert refused.status_code == 409
    body = refused.json()
    assert body["cycle"] == [b["id"], a["id"], b["id"]]
    assert f"{b['id']} → {a['id']} → {b['id']}" in body["detail"]


async def test_three_cycle_is_refused_and_named(client: httpx.AsyncClient, world: World) -> None:
    a, b, c = [await create_task(client, world.owner, world.project_id) for _ in range(3)]
    assert (await depend(client, world.owner, a["id"], b["id"])).status_code == 204
    assert (await depend(client, world.owner, b["id"], c["id"])).status_code == 204
    refused = await depend(client, world.owner, c["id"], a["id"])
    assert refused.status_code == 409
    assert refused.json()["cycle"] == [c["id"], a["id"], b["id"], c["id"]]
    # A diamond is not a cycle: a → c directly as well as through b.
    assert (await depend(client, world.owner, a["id"], c["id"])).status_code == 204


async def test_concurrent_opposite_edges_never_both_succeed(
    client: httpx.AsyncClient, world: World
) -> None:
    for _ in range(10):
        a, b = await asyncio.gather(create_task(client, world.owner, world.project_id),
                                    create_task(client, world.owner, world.project_id))
        forward, backward = await asyncio.gather(
            depend(client, world.owner, a["id"], b["id"]),
            depend(client, world.editor, b["id"], a["id"]),
        )
        assert sorted([forward.status_code, backward.status_code]) == [204, 409]
        listed = await client.get(f"/v1/projects/{world.project_id}/tasks",
                                  headers=world.owner.headers,
                                  params={"sort": "-createdAt", "limit": 2})
        edges = [task["dependsOn"] for task in listed.json()["items"]]
        assert sorted(map(len, edges)) == [0, 1]


async def test_concurrent_three_cycle(client: httpx.AsyncClient, world: World) -> None:
    for _ in range(3):
        a, b, c = await asyncio.gather(
            *(create_task(client, world.owner, world.project_id) for _ in range(3))
        )
        results = await asyncio.gather(
            depend(client, world.owner, a["id"], b["id"]),
            depend(client, world.owner, b["id"], c["id"]),
            depend(client, world.editor, c["id"], a["id"]),
        )
        assert sorted(r.status_code for r in results) == [204, 204, 409]


async def test_schedule(client: httpx.AsyncClient, world: World) -> None:
    """design ← build ← test ← release, and docs ← release; review stands alone.

    Expected depths: design 0, review 0, docs 0, build 1, test 2, release 3."""
    project_id = await create_project(client, world.owner)
    names = ["design", "review", "build", "docs", "test", "release"]
    ids = {name: (await create_task(client, world.owner, project_id, title=name))["id"]
           for name in names}
    for task, dep in (("build", "design"), ("test", "build"), ("release", "test"),
                      ("release", "docs")):
        assert (await depend(client, world.owner, ids[task], ids[dep])).status_code == 204

    response = await client.get(f"/v1/projects/{project_id}/schedule",
                                headers=world.owner.headers)
    assert response.status_code == 200
    body = response.json()
    order = [item["taskId"] for item in body["items"]]
    position = {task_id: index for index, task_id in enumerate(order)}
    for task, dep in (("build", "design"), ("test", "build"), ("release", "test"),
                      ("release", "docs")):
        assert position[ids[dep]] < position[ids[task]]
    depths = {item["title"]: item["depth"] for item in body["items"]}
    assert depths == {"design": 0, "review": 0, "docs": 0, "build": 1, "test": 2, "release": 3}
    assert body["criticalPath"] == [ids["design"], ids["build"], ids["test"], ids["release"]]
    assert body["length"] == 4
    assert body["items"][0] == {"taskId": ids["design"], "title": "design", "status": "TODO",
                                "depth": 0}

    empty = await client.get(f"/v1/projects/{await create_project(client, world.owner)}/schedule",
                             headers=world.owner.headers)
    assert empty.json() == {"items": [], "criticalPath": [], "length": 0}


async def test_schedule_is_capped(
    client: httpx.AsyncClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schedule holds a project's whole graph in memory: over the setting's number of
    tasks it is a 409 problem saying so, not a response of every task of a huge project."""
    settings = client.app.state.platform.settings  # type: ignore[attr-defined]
    assert settings.schedule_max_tasks == 5000  # the documented default
    monkeypatch.setattr(settings, "schedule_max_tasks", 3)
    project_id = await create_project(client, world.owner)
    path = f"/v1/projects/{project_id}/schedule"
    ids = [(await create_task(client, world.owner, project_id))["id"] for _ in range(3)]
    assert (await depend(client, world.owner, ids[1], ids[0])).status_code == 204
    at_the_cap = await client.get(path, headers=world.owner.headers)
    assert at_the_cap.status_code == 200
    assert len(at_the_cap.json()["items"]) == 3
    await create_task(client, world.owner, project_id)
    refused = await client.get(path, headers=world.owner.headers)
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["type"].endswith("/schedule-too-large")
    assert body["maxTasks"] == 3
    assert "more than 3 tasks" in body["detail"]
    # Visibility is decided first: a non-member still gets 404, not the size.
    assert (await client.get(path, headers=world.outsider.headers)).status_code == 404


async def test_a_done_task_takes_closed_dependencies_only(
    client: httpx.AsyncClient, world: World
) -> None:
    """DONE needs blocked == false: an open dependency for a DONE task is 409 naming it, as
    moving a blocked task to DONE is. Reopening a dependency later does not reopen the DONE
    task, so that is how a DONE task can still become blocked (docs/tasks.md)."""
    done = await create_task(client, world.owner, world.project_id, status="DONE")
    open_ = await create_task(client, world.owner, world.project_id)
    closed = await create_task(client, world.owner, world.project_id, status="CANCELLED")

    refused = await depend(client, world.editor, done["id"], open_["id"])
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["blockers"] == [open_["id"]]
    assert body["errors"] == [{"field": "dependsOnId", "message": f"blocked by {open_['id']}"}]
    assert open_["id"] in body["detail"]
    after = (await client.get(f"/v1/tasks/{done['id']}", headers=world.owner.headers)).json()
    assert (after["status"], after["dependsOn"], after["blocked"], after["version"]) == (
        "DONE", [], False, 1)

    assert (await depend(client, world.editor, done["id"], closed["id"])).status_code == 204
    reopened = await client.patch(f"/v1/tasks/{closed['id']}", headers=world.owner.headers,
                                  json={"status": "TODO"})
    assert reopened.status_code == 200
    after = (await client.get(f"/v1/tasks/{done['id']}", headers=world.owner.headers)).json()
    assert (after["status"], after["blocked"]) == ("DONE", True)
    # The edge exists already: adding it again changes nothing and is not refused.
    assert (await depend(client, world.editor, done["id"], closed["id"])).status_code == 204


async def test_moving_to_done_locks_every_blocker(client: httpx.AsyncClient, world: World) -> None:
    """Until the PATCH to DONE commits, none of the task's dependencies can change status:
    the closed ones are locked FOR SHARE too (only the open ones were, and a task moving to
    DONE has none), so a blocker cannot reopen before the commit."""
    closed = await create_task(client, world.owner, world.project_id, status="DONE")
    cancelled = await create_task(client, world.owner, world.project_id, status="CANCELLED")
    task = await create_task(client, world.owner, world.project_id,
                             dependsOn=[closed["id"], cancelled["id"]])
    auth = AuthContext(uuid.UUID(world.tenant.id), uuid.UUID(world.owner.id), Role.MANAGER)
    db = client.app.state.platform.db  # type: ignore[attr-defined]
    other = await owner_connection(database_url())
    try:
        async with db.sessions() as session:
            await set_tenant(session, world.tenant.id)
            done = await service.update_task(session, auth, uuid.UUID(task["id"]),
                                             body=TaskUpdate(status=TaskStatus.DONE))
            assert done.status == "DONE"
            for blocker in (closed, cancelled):
                # What a PATCH of that blocker takes first; NOWAIT: no waiting, no timing.
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await other.execute(
                        "SELECT id FROM tasks.tasks WHERE id = $1 FOR NO KEY UPDATE NOWAIT",
                        uuid.UUID(blocker["id"]))
            await session.rollback()
        async with other.transaction():
            await other.execute(
                "SELECT id FROM tasks.tasks WHERE id = $1 FOR NO KEY UPDATE NOWAIT",
                uuid.UUID(closed["id"]))
    finally:
        await other.close()


async def test_done_racing_a_new_dependency_never_errors(
    client: httpx.AsyncClient, world: World
) -> None:
    """PATCH to DONE racing an edge to an open task: the graph lock orders them, and exactly
    one wins. Edge first: the PATCH sees the open blocker (409). PATCH first: a DONE task
    takes no open dependency (409). Never a deadlock, a 500, or a DONE task blocked."""
    for _ in range(5):
        a, b = await asyncio.gather(create_task(client, world.owner, world.project_id),
                                    create_task(client, world.owner, world.project_id))
        done, edge = await asyncio.gather(
            client.patch(f"/v1/tasks/{a['id']}", headers=world.owner.headers,
                         json={"status": "DONE"}),
            depend(client, world.editor, a["id"], b["id"]),
        )
        outcome = (done.status_code, edge.status_code)
        assert outcome in {(200, 409), (409, 204)}, (done.text, edge.text)
        final = (await client.get(f"/v1/tasks/{a['id']}", headers=world.owner.headers)).json()
        if done.status_code == 200:
            assert (final["status"], final["dependsOn"]) == ("DONE", [])
            assert edge.json()["blockers"] == [b["id"]]
        else:
            assert (final["status"], final["dependsOn"]) == ("TODO", [b["id"]])
            assert done.json()["blockers"] == [b["id"]]
        assert final["blocked"] is (final["status"] != "DONE")


async def test_graph_writers_racing_never_error(client: httpx.AsyncClient, world: World) -> None:
    """Finishing a task, adding an edge to it and deleting that edge's target, all at once:
    each request gets a clean answer, and no edge outlives its task."""
    for _ in range(4):
        a, b = await asyncio.gather(create_task(client, world.owner, world.project_id),
                                    create_task(client, world.owner, world.project_id))
        done, edge, deleted = await asyncio.gather(
            client.patch(f"/v1/tasks/{a['id']}", headers=world.owner.headers,
                         json={"status": "DONE"}),
            depend(client, world.editor, a["id"], b["id"]),
            client.delete(f"/v1/tasks/{b['id']}", headers=world.owner.headers),
        )
        assert done.status_code in {200, 409}, done.text
        # 409: a DONE task takes no open dependency.
        assert edge.status_code in {204, 404, 409}, edge.text
        assert deleted.status_code == 204, deleted.text
        final = (await client.get(f"/v1/tasks/{a['id']}", headers=world.owner.headers)).json()
        assert final["dependsOn"] == []
