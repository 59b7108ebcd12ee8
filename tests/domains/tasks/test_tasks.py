"""Creating, reading, changing and deleting tasks: fields, If-Match, completedAt, the
assignee rule, validation, and the events each change writes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import add_user
from tests.domains.tasks.helpers import World, create_project, create_task, depend, outbox
from tests.support.db import database_url
from tests.support.servers import owner_connection


async def test_create_returns_every_field(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(
        f"/v1/projects/{world.project_id}/tasks",
        headers=world.editor.headers,
        json={"title": "  Write the launch plan ", "description": "for Q3",
              "priority": "HIGH", "assigneeId": world.assignee.id, "dueDate": "2030-01-31",
              "labels": ["launch", "plan", "launch"]},
    )
    assert response.status_code == 201, response.text
    task = response.json()
    assert set(task) == {
        "id", "projectId", "title", "description", "status", "priority", "assigneeId",
        "reporterId", "dueDate", "labels", "dependsOn", "blocked", "version", "createdAt",
        "updatedAt", "completedAt",
    }
    assert task["title"] == "Write the launch plan"
    assert task["status"] == "TODO"
    assert task["reporterId"] == world.editor.id
    assert task["labels"] == ["launch", "plan"]
    assert (task["dependsOn"], task["blocked"], task["version"]) == ([], False, 1)
    assert task["completedAt"] is None
    assert task["createdAt"].endswith("Z")
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == f"/v1/tasks/{task['id']}"
    fetched = await client.get(f"/v1/tasks/{task['id']}", headers=world.viewer.headers)
    assert fetched.json() == task

    types = [e["type"] for e in await outbox(client, world.tenant.id, subject_id=task["id"])]
    assert types == ["task.created", "task.assigned"]


async def test_invalid_bodies_are_422(client: httpx.AsyncClient, world: World) -> None:
    path = f"/v1/projects/{world.project_id}/tasks"
    for body in (
        {"title": ""},
        {"title": "   "},
        {"title": "x" * 201},
        {"title": "ok", "status": "STARTED"},
        {"title": "ok", "priority": "urgent"},
        {"title": "ok", "unknown": 1},
        {"title": "ok", "dueDate": "31/01/2030"},
        {"title": "ok", "labels": [""]},
    ):
        response = await client.post(path, headers=world.owner.headers, json=body)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"
    task = await create_task(client, world.owner, world.project_id)
    for body in ({"title": None}, {"status": None}, {"labels": None}, {"reporterId": None}):
        response = await client.patch(f"/v1/tasks/{task['id']}", headers=world.owner.headers,
                                      json=body)
        assert response.status_code == 422, body


async def test_assignee_must_be_a_project_member(client: httpx.AsyncClient, world: World) -> None:
    path = f"/v1/projects/{world.project_id}/tasks"
    for assignee in (world.outsider.id, "00000000-0000-4000-8000-000000000000"):
        response = await client.post(path, headers=world.owner.headers,
                                     json={"title": "t", "assigneeId": assignee})
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "assigneeId"
    # The owner counts as a member.
    task = await create_task(client, world.owner, world.project_id, assigneeId=world.owner.id)
    moved = await client.patch(f"/v1/tasks/{task['id']}", headers=world.owner.headers,
                               json={"assigneeId": world.outsider.id})
    assert moved.status_code == 422
    moved = await client.patch(f"/v1/tasks/{task['id']}", headers=world.owner.headers,
                               json={"assigneeId": world.editor.id})
    assert moved.status_code == 200
    assigned = [e for e in await outbox(client, world.tenant.id, subject_id=task["id"])
                if e["type"] == "task.assigned"]
    assert assigned[-1]["data"] == {"projectId": world.project_id, "assigneeId": world.editor.id,
                                    "previousAssigneeId": world.owner.id}


async def test_if_match(client: httpx.AsyncClient, world: World) -> None:
    task = await create_task(client, world.owner, world.project_id)
    path = f"/v1/tasks/{task['id']}"

    async def patch(if_match: str, title: str) -> httpx.Response:
        return await client.patch(path, headers={**world.owner.headers, "If-Match": if_match},
                                  json={"title": title})

    first = await patch('"1"', "first")
    assert first.status_code == 200
    assert first.headers["ETag"] == '"2"'
    stale = await patch('"1"', "second")
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    assert stale.headers["ETag"] == '"2"'  # how stale the client is, as projects say it
    assert (await client.get(path, headers=world.owner.headers)).json()["title"] == "first"
    # RFC 9110: If-Match compares strongly, so a weak tag never matches.
    weak = await patch('W/"2"', "weak")
    assert weak.status_code == 412
    assert weak.headers["ETag"] == '"2"'
    listed = await patch('W/"2", "9", "2"', "third")
    assert listed.status_code == 200
    garbage = await patch("nonsense", "fourth")
    assert garbage.status_code == 412
    too_long = await patch(", ".join(['"3"'] * 200), "fifth")
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "If-Match"
    assert (await patch("*", "any")).status_code == 200
    # Without If-Match the last write wins.
    blind = await client.patch(path, headers=world.owner.headers, json={"title": "last"})
    assert blind.status_code == 200
    assert blind.json()["version"] == 5


async def test_delete_honours_if_match(client: httpx.AsyncClient, world: World) -> None:
    task = await create_task(client, world.owner, world.project_id)
    path = f"/v1/tasks/{task['id']}"
    for stale in ('"999"', 'W/"1"', "nonsense"):
        refused = await client.delete(path, headers={**world.owner.headers, "If-Match": stale})
        assert refused.status_code == 412, stale
        assert refused.headers["ETag"] == '"1"'
    too_long = await client.delete(
        path, headers={**world.owner.headers, "If-Match": ", ".join(['"1"'] * 200)})
    assert too_long.status_code == 422
    assert (await client.get(path, headers=world.owner.headers)).status_code == 200
    deleted = await client.delete(path, headers={**world.owner.headers, "If-Match": '"7", "1"'})
    assert deleted.status_code == 204
    assert (await client.get(path, headers=world.owner.headers)).status_code == 404
    other = await create_task(client, world.owner, world.project_id)
    star = await client.delete(f"/v1/tasks/{other['id']}",
                               headers={**world.owner.headers, "If-Match": "*"})
    assert star.status_code == 204


async def test_concurrent_patches_with_one_etag_let_exactly_one_win(
    client: httpx.AsyncClient, world: World
) -> None:
    """The If-Match check runs on the locked row: two writers holding version 1 cannot
    both succeed."""
    for _ in range(3):
        task = await create_task(client, world.owner, world.project_id)
        path = f"/v1/tasks/{task['id']}"
        responses = await asyncio.gather(*(
            client.patch(path, headers={**actor.headers, "If-Match": '"1"'},
                         json={"title": f"by {actor.username}"})
            for actor in (world.owner, world.editor)
        ))
        assert sorted(r.status_code for r in responses) == [200, 412]
        winner = next(r for r in responses if r.status_code == 200).json()
        loser = next(r for r in responses if r.status_code == 412)
        assert loser.headers["ETag"] == '"2"'
        after = (await client.get(path, headers=world.owner.headers)).json()
        assert (after["version"], after["title"]) == (2, winner["title"])


async def test_due_date_must_be_a_real_day(client: httpx.AsyncClient, world: World) -> None:
    """asyncpg stores date.min/date.max as -infinity/infinity: 9999-12-31 would tie with
    "no due date" under sort=dueDate. Both ends are refused, naming the allowed range."""
    project_id = await create_project(client, world.owner)
    path = f"/v1/projects/{project_id}/tasks"
    for due in ("9999-12-31", "0001-01-01"):
        refused = await client.post(path, headers=world.owner.headers,
                                    json={"title": "t", "dueDate": due})
        assert refused.status_code == 422, due
        error = refused.json()["errors"][0]
        assert error["field"] == "dueDate"
        assert "0001-01-02" in error["message"]
        assert "9999-12-30" in error["message"]
    undated = await create_task(client, world.owner, project_id)
    last = await create_task(client, world.owner, project_id, dueDate="9999-12-30")
    first = await create_task(client, world.owner, project_id, dueDate="0001-01-02")
    for due in ("9999-12-31", "0001-01-01"):
        patched = await client.patch(f"/v1/tasks/{first['id']}", headers=world.owner.headers,
                                     json={"dueDate": due})
        assert patched.status_code == 422, due
        assert patched.json()["errors"][0]["field"] == "dueDate"
    listed = await client.get(path, headers=world.owner.headers, params={"sort": "dueDate"})
    assert [t["id"] for t in listed.json()["items"]] == [first["id"], last["id"], undated["id"]]


async def test_patch_records_changes(client: httpx.AsyncClient, world: World) -> None:
    task = await create_task(client, world.owner, world.project_id, dueDate="2030-05-01")
    response = await client.patch(
        f"/v1/tasks/{task['id']}", headers=world.editor.headers,
        json={"status": "IN_PROGRESS", "dueDate": None, "labels": ["a"], "title": task["title"]},
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["dueDate"], body["labels"]) == ("IN_PROGRESS", None, ["a"])
    events = await outbox(client, world.tenant.id, subject_id=task["id"])
    updated = next(e for e in events if e["type"] == "task.updated")
    assert updated["data"]["changes"] == {
        "status": ["TODO", "IN_PROGRESS"], "dueDate": ["2030-05-01", None], "labels": [[], ["a"]]
    }
    changed = next(e for e in events if e["type"] == "task.status_changed")
    assert changed["data"]["from"] == "TODO"
    assert changed["data"]["to"] == "IN_PROGRESS"
    # Sending the values it already has changes nothing, not even the version.
    same = await client.patch(f"/v1/tasks/{task['id']}", headers=world.editor.headers,
                              json={"status": "IN_PROGRESS"})
    assert same.json()["version"] == body["version"]


async def test_done_sets_and_leaving_done_clears_completed_at(
    client: httpx.AsyncClient, world: World
) -> None:
    task = await create_task(client, world.owner, world.project_id,
                             assigneeId=world.assignee.id)
    path = f"/v1/tasks/{task['id']}"
    done = (await client.patch(path, headers=world.assignee.headers,
                               json={"status": "DONE"})).json()
    assert done["completedAt"] is not None
    reopened = (await client.patch(path, headers=world.assignee.headers,
                                   json={"status": "IN_REVIEW"})).json()
    assert reopened["completedAt"] is None
    assert reopened["status"] == "IN_REVIEW"


async def test_blocked_task_cannot_be_done(client: httpx.AsyncClient, world: World) -> None:
    first = await create_task(client, world.owner, world.project_id)
    second = await create_task(client, world.owner, world.project_id)
    task = await create_task(client, world.owner, world.project_id,
                             dependsOn=[first["id"], second["id"]])
    assert task["blocked"] is True
    await client.patch(f"/v1/tasks/{second['id']}", headers=world.owner.headers,
                       json={"status": "CANCELLED"})
    refused = await client.patch(f"/v1/tasks/{task['id']}", headers=world.owner.headers,
                                 json={"status": "DONE"})
    assert refused.status_code == 409
    assert refused.json()["blockers"] == [first["id"]]
    await client.patch(f"/v1/tasks/{first['id']}", headers=world.owner.headers,
                       json={"status": "DONE"})
    unblocked = (await client.get(f"/v1/tasks/{task['id']}", headers=world.owner.headers)).json()
    assert unblocked["blocked"] is False
    accepted = await client.patch(f"/v1/tasks/{task['id']}", headers=world.owner.headers,
                                  json={"status": "DONE"})
    assert accepted.status_code == 200
    # Created DONE with an open dependency: refused the same way.
    refused = await client.post(
        f"/v1/projects/{world.project_id}/tasks", headers=world.owner.headers,
        json={"title": "done already", "status": "DONE",
              "dependsOn": [(await create_task(client, world.owner, world.project_id))["id"]]},
    )
    assert refused.status_code == 409
    assert len(refused.json()["blockers"]) == 1


async def test_delete_removes_task_and_edges(client: httpx.AsyncClient, world: World) -> None:
    base = await create_task(client, world.owner, world.project_id)
    task = await create_task(client, world.owner, world.project_id, dependsOn=[base["id"]])
    assert (await client.delete(f"/v1/tasks/{base['id']}",
                                headers=world.editor.headers)).status_code == 204
    after = (await client.get(f"/v1/tasks/{task['id']}", headers=world.owner.headers)).json()
    assert (after["dependsOn"], after["blocked"]) == ([], False)
    again = await client.delete(f"/v1/tasks/{base['id']}", headers=world.editor.headers)
    assert again.status_code == 404
    types = [e["type"] for e in await outbox(client, world.tenant.id, subject_id=base["id"])]
    assert types[-1] == "task.deleted"


async def test_my_tasks(client: httpx.AsyncClient, world: World) -> None:
    me = await add_user(client, world.tenant, "MEMBER")
    other_project = await create_project(client, world.owner)
    for project_id in (world.project_id, other_project):
        await client.put(f"/v1/projects/{project_id}/members/{me.id}",
                         headers=world.owner.headers, json={"role": "VIEWER"})
    mine = [
        await create_task(client, world.owner, world.project_id, assigneeId=me.id),
        await create_task(client, world.owner, other_project, assigneeId=me.id,
                          priority="URGENT"),
    ]
    await create_task(client, world.owner, world.project_id, assigneeId=world.assignee.id)
    response = await client.get("/v1/users/me/tasks", headers=me.headers)
    assert response.status_code == 200
    assert [t["id"] for t in response.json()["items"]] == [t["id"] for t in mine]
    urgent = await client.get("/v1/users/me/tasks", headers=me.headers,
                              params={"priority": "URGENT"})
    assert [t["id"] for t in urgent.json()["items"]] == [mine[1]["id"]]
    searched = await client.get("/v1/users/me/tasks", headers=me.headers,
                                params={"q": "zebras"})
    assert searched.status_code == 200
    assert searched.json()["items"] == []
    zebra = await create_task(client, world.owner, world.project_id, assigneeId=me.id,
                              title="Paint the zebra crossing")
    searched = await client.get("/v1/users/me/tasks", headers=me.headers,
                                params={"q": "zebras"})
    assert [t["id"] for t in searched.json()["items"]] == [zebra["id"]]
    await client.delete(f"/v1/tasks/{zebra['id']}", headers=world.owner.headers)
    # A task of a project the caller can no longer see is not listed.
    await client.delete(f"/v1/projects/{other_project}", headers=world.owner.headers)
    response = await client.get("/v1/users/me/tasks", headers=me.headers)
    assert [t["id"] for t in response.json()["items"]] == [mine[0]["id"]]


async def test_an_admins_tasks_of_a_deleted_project_vanish_at_once(
    client: httpx.AsyncClient, world: World
) -> None:
    """An ADMIN reads "every project", so only the tasks.project_deleted consumer used to
    hide a deleted project's tasks from their /users/me/tasks (and nothing, if it
    dead-lettered), while GET /v1/tasks/{id} was 404 at once. The consumer is held off
    here by a lock on those rows, the state it leaves while it has not run."""
    admin = world.admin
    doomed, kept = [await create_project(client, world.owner) for _ in range(2)]
    for project_id in (doomed, kept):
        await client.put(f"/v1/projects/{project_id}/members/{admin.id}",
                         headers=world.owner.headers, json={"role": "EDITOR"})
    tasks = [await create_task(client, world.owner, project_id, assigneeId=admin.id)
             for project_id in (doomed, kept, doomed, doomed, kept, doomed)]
    survivors = [t["id"] for t in tasks if t["projectId"] == kept]

    holder = await owner_connection(database_url())
    try:
        async with holder.transaction():
            await holder.execute(
                "SELECT id FROM tasks.tasks WHERE project_id = $1 FOR SHARE", doomed)
            deleted = await client.delete(f"/v1/projects/{doomed}", headers=world.owner.headers)
            assert deleted.status_code == 204
            for task in tasks:
                gone = await client.get(f"/v1/tasks/{task['id']}", headers=admin.headers)
                assert gone.status_code == (200 if task["id"] in survivors else 404)
            for limit in (1, 2, 50):
                walked: list[str] = []
                cursor = None
                while True:
                    params: dict[str, Any] = {"limit": limit, **({"cursor": cursor}
                                                                 if cursor else {})}
                    page = await client.get("/v1/users/me/tasks", headers=admin.headers,
                                            params=params)
                    assert page.status_code == 200, page.text
                    assert len(page.json()["items"]) <= limit
                    walked += [t["id"] for t in page.json()["items"]]
                    cursor = page.json()["nextCursor"]
                    if cursor is None:
                        break
                assert walked == survivors, limit
            still_there = await holder.fetchval(
                "SELECT count(*) FROM tasks.tasks WHERE project_id = $1", doomed)
            assert still_there == 4  # the consumer has not deleted them
    finally:
        await holder.close()


async def test_tasks_of_a_deleted_project_are_404(client: httpx.AsyncClient, world: World) -> None:
    project_id = await create_project(client, world.owner)
    task = await create_task(client, world.owner, project_id)
    assert (await client.delete(f"/v1/projects/{project_id}",
                                headers=world.owner.headers)).status_code == 204
    for path in (f"/v1/tasks/{task['id']}", f"/v1/projects/{project_id}/tasks"):
        assert (await client.get(path, headers=world.admin.headers)).status_code == 404
    assert (await depend(client, world.admin, task["id"], task["id"])).status_code == 404
