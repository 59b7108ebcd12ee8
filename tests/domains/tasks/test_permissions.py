"""The task permission table, enumerated: every relationship to the project, times every action,
plus cross-tenant 404s and 401s for every route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from pantherahive.domains.tasks.permissions import TASK_PERMISSIONS, ProjectRight, TaskAction
from tests.conftest import Actor, create_tenant
from tests.domains.tasks.helpers import World, create_task, outbox

ACTORS = ("owner", "editor", "viewer", "assignee", "outsider", "admin")
READERS = {"owner": True, "editor": True, "viewer": True, "assignee": True, "outsider": False,
           "admin": True}
WRITERS = {"owner": True, "editor": True, "viewer": False, "assignee": False, "outsider": False,
           "admin": True}

Action = Callable[[httpx.AsyncClient, World, Actor, dict[str, Any]], Awaitable[httpx.Response]]


async def _list(client: httpx.AsyncClient, w: World, actor: Actor, task: dict[str, Any]
                ) -> httpx.Response:
    return await client.get(f"/v1/projects/{w.project_id}/tasks", headers=actor.headers,
                            params={"sort": "-createdAt", "limit": 5})


async def _get(client: httpx.AsyncClient, w: World, actor: Actor, task: dict[str, Any]
               ) -> httpx.Response:
    return await client.get(f"/v1/tasks/{task['id']}", headers=actor.headers)


async def _schedule(client: httpx.AsyncClient, w: World, actor: Actor, task: dict[str, Any]
                    ) -> httpx.Response:
    return await client.get(f"/v1/projects/{w.project_id}/schedule", headers=actor.headers)


async def _create(client: httpx.AsyncClient, w: World, actor: Actor, task: dict[str, Any]
                  ) -> httpx.Response:
    return await client.post(f"/v1/projects/{w.project_id}/tasks", headers=actor.headers,
                             json={"title": "made by the matrix"})


async def _patch(client: httpx.AsyncClient, w: World, actor: Actor, task: dict[str, Any]
                 ) -> httpx.Response:
    return await client.patch(f"/v1/tasks/{task['id']}", headers=actor.headers,
                              json={"title": "renamed", "priority": "HIGH"})


async def _patch_status(client: httpx.AsyncClient, w: World, actor: Actor, task: dict[str, Any]
                        ) -> httpx.Response:
    return await client.patch(f"/v1/tasks/{task['id']}", headers=actor.headers,
                              json={"status": "IN_PROGRESS"})


async def _delete(client: httpx.AsyncClient, w: World, actor: Actor, task: dict[str, Any]
                  ) -> httpx.Response:
    return await client.delete(f"/v1/tasks/{task['id']}", headers=actor.headers)


async def _add_dependency(client: httpx.AsyncClient, w: World, actor: Actor,
                          task: dict[str, Any]) -> httpx.Response:
    other = await create_task(client, w.owner, w.project_id)
    return await client.put(f"/v1/tasks/{task['id']}/dependencies/{other['id']}",
                            headers=actor.headers)


# action -> (how to perform it, the permission-table entry it exercises, success status)
ACTIONS: dict[str, tuple[Action, TaskAction, int]] = {
    "list": (_list, TaskAction.READ, 200),
    "get": (_get, TaskAction.READ, 200),
    "schedule": (_schedule, TaskAction.READ, 200),
    "create": (_create, TaskAction.CREATE, 201),
    "patch": (_patch, TaskAction.UPDATE, 200),
    "patch-status": (_patch_status, TaskAction.UPDATE_STATUS, 200),
    "delete": (_delete, TaskAction.DELETE, 204),
    "add-dependency": (_add_dependency, TaskAction.MANAGE_DEPENDENCIES, 204),
}


def expected_status(action: str, actor: str) -> int:
    """Derived from the permission table itself, so table and behaviour cannot drift."""
    _, task_action, success = ACTIONS[action]
    if not READERS[actor]:
        return 404  # the project, and so its tasks, are invisible
    right, assignee_allowed = TASK_PERMISSIONS[task_action]
    allowed = READERS[actor] if right is ProjectRight.READ else WRITERS[actor]
    return success if allowed or (assignee_allowed and actor == "assignee") else 403


def test_matrix_spot_checks() -> None:
    """The derived expectations say what API.md says, in plain words."""
    assert expected_status("patch-status", "assignee") == 200
    assert expected_status("patch", "assignee") == 403
    assert expected_status("create", "viewer") == 403
    assert expected_status("get", "viewer") == 200
    assert expected_status("get", "outsider") == 404
    assert expected_status("delete", "editor") == 204
    assert expected_status("add-dependency", "admin") == 204


@pytest.mark.parametrize("actor_name", ACTORS)
@pytest.mark.parametrize("action", list(ACTIONS))
async def test_permission_matrix(
    client: httpx.AsyncClient, world: World, action: str, actor_name: str
) -> None:
    task = await create_task(client, world.owner, world.project_id,
                             assigneeId=world.assignee.id)
    actor = world.actor(actor_name)
    perform, task_action, _ = ACTIONS[action]
    response = await perform(client, world, actor, task)
    expected = expected_status(action, actor_name)
    assert response.status_code == expected, response.text

    if expected == 403:
        denied = [e for e in await outbox(client, world.tenant.id)
                  if e["type"] == "authz.denied" and e["actor_id"] is not None
                  and str(e["actor_id"]) == actor.id]
        assert denied, "a 403 leaves an authz.denied event"
        assert denied[-1]["data"]["action"] in {task_action.value, TaskAction.UPDATE.value}
    if expected == 404:
        assert task["title"] not in response.text
    if action == "list" and expected == 200:
        assert task["id"] in [item["id"] for item in response.json()["items"]]
    if action == "get" and expected == 200:
        assert response.json()["id"] == task["id"]
        assert response.headers["ETag"] == '"1"'
    if action in {"patch", "patch-status"} and expected == 200:
        assert response.json()["version"] == 2
    if action == "delete" and expected == 204:
        gone = await client.get(f"/v1/tasks/{task['id']}", headers=world.owner.headers)
        assert gone.status_code == 404
    if expected in {403, 404} and action in {"patch", "patch-status", "delete"}:
        unchanged = await client.get(f"/v1/tasks/{task['id']}", headers=world.owner.headers)
        assert unchanged.json()["version"] == 1


async def test_assignee_may_not_change_other_fields(
    client: httpx.AsyncClient, world: World
) -> None:
    task = await create_task(client, world.owner, world.project_id,
                             assigneeId=world.assignee.id)
    response = await client.patch(
        f"/v1/tasks/{task['id']}", headers=world.assignee.headers,
        json={"status": "IN_REVIEW", "title": "mine now"},
    )
    assert response.status_code == 403
    after = (await client.get(f"/v1/tasks/{task['id']}", headers=world.owner.headers)).json()
    assert (after["status"], after["title"], after["version"]) == ("TODO", task["title"], 1)
    # A viewer who is not the assignee may not change the status either.
    response = await client.patch(f"/v1/tasks/{task['id']}", headers=world.viewer.headers,
                                  json={"status": "IN_REVIEW"})
    assert response.status_code == 403


def _routes(project_id: str, task_id: str, other_id: str) -> list[tuple[str, str, Any]]:
    return [
        ("GET", f"/v1/projects/{project_id}/tasks", None),
        ("POST", f"/v1/projects/{project_id}/tasks", {"title": "intruder"}),
        ("GET", f"/v1/projects/{project_id}/schedule", None),
        ("GET", f"/v1/tasks/{task_id}", None),
        ("PATCH", f"/v1/tasks/{task_id}", {"title": "intruder"}),
        ("DELETE", f"/v1/tasks/{task_id}", None),
        ("PUT", f"/v1/tasks/{task_id}/dependencies/{other_id}", None),
        ("DELETE", f"/v1/tasks/{task_id}/dependencies/{other_id}", None),
    ]


async def test_every_route_is_404_across_tenants(client: httpx.AsyncClient, world: World) -> None:
    task = await create_task(client, world.owner, world.project_id)
    other = await create_task(client, world.owner, world.project_id)
    await client.put(f"/v1/tasks/{task['id']}/dependencies/{other['id']}",
                     headers=world.owner.headers)
    stranger = (await create_tenant(client)).admin  # an ADMIN, of another tenant
    for method, path, body in _routes(world.project_id, task["id"], other["id"]):
        response = await client.request(method, path, headers=stranger.headers, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert task["title"] not in response.text
    mine = await client.get("/v1/users/me/tasks", headers=stranger.headers)
    assert mine.status_code == 200
    assert mine.json()["items"] == []
    after = (await client.get(f"/v1/tasks/{task['id']}", headers=world.owner.headers)).json()
    assert after["version"] == 1
    assert after["dependsOn"] == [other["id"]]


async def test_every_route_is_401_without_a_token(client: httpx.AsyncClient, world: World) -> None:
    task = await create_task(client, world.owner, world.project_id)
    routes = [*_routes(world.project_id, task["id"], task["id"]),
              ("GET", "/v1/users/me/tasks", None)]
    for method, path, body in routes:
        response = await client.request(method, path, json=body)
        assert response.status_code == 401, (method, path)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        bad = await client.request(method, path, json=body,
                                   headers={"Authorization": "Bearer not-a-token"})
        assert bad.status_code == 401, (method, path)
