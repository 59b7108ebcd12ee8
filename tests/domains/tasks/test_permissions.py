"""The task permission matrix, enumerated: tenant role x project membership x action, plus
cross-tenant 404s and 401s for every route.

The expected answers are written out by hand below, from API.md and docs/tasks.md, not
derived from ``TASK_PERMISSIONS``: a wrong entry in the code's table must fail here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from pantherahive.domains.tasks.permissions import TaskAction
from tests.conftest import Actor, create_tenant
from tests.domains.tasks.helpers import World, create_task, depend, outbox

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
    return await depend(client, actor, task["id"], other["id"])


async def _remove_dependency(client: httpx.AsyncClient, w: World, actor: Actor,
                             task: dict[str, Any]) -> httpx.Response:
    other = await create_task(client, w.owner, w.project_id)
    assert (await depend(client, w.owner, task["id"], other["id"])).status_code == 204
    return await client.delete(f"/v1/tasks/{task['id']}/dependencies/{other['id']}",
                               headers=actor.headers)


# action -> (how to perform it, the action an authz.denied event names)
ACTIONS: dict[str, tuple[Action, TaskAction]] = {
    "list": (_list, TaskAction.READ),
    "get": (_get, TaskAction.READ),
    "schedule": (_schedule, TaskAction.READ),
    "create": (_create, TaskAction.CREATE),
    "patch": (_patch, TaskAction.UPDATE),
    "patch-status": (_patch_status, TaskAction.UPDATE_STATUS),
    "delete": (_delete, TaskAction.DELETE),
    "add-dependency": (_add_dependency, TaskAction.MANAGE_DEPENDENCIES),
    "remove-dependency": (_remove_dependency, TaskAction.MANAGE_DEPENDENCIES),
}

# Who is who (World): tenant role / project membership.
#   owner            MANAGER, the project's OWNER
#   editor           MEMBER, EDITOR
#   viewer           MEMBER, VIEWER
#   assignee         MEMBER, VIEWER, and the assignee of the task acted on
#   outsider         MEMBER, not a member
#   manager_outsider MANAGER, not a member
#   admin            ADMIN, not a member
#   admin_viewer     ADMIN, and a VIEWER of the project
ACTORS = ("owner", "editor", "viewer", "assignee", "outsider", "manager_outsider", "admin",
          "admin_viewer")
EXPECTED: dict[str, tuple[int, ...]] = {
    #                   owner editor viewer assignee outsider mgr-out admin admin-viewer
    "list":              (200, 200,   200,   200,     404,     404,    200,  200),
    "get":               (200, 200,   200,   200,     404,     404,    200,  200),
    "schedule":          (200, 200,   200,   200,     404,     404,    200,  200),
    "create":            (201, 201,   403,   403,     404,     404,    201,  201),
    "patch":             (200, 200,   403,   403,     404,     404,    200,  200),
    "patch-status":      (200, 200,   403,   200,     404,     404,    200,  200),
    "delete":            (204, 204,   403,   403,     404,     404,    204,  204),
    "add-dependency":    (204, 204,   403,   403,     404,     404,    204,  204),
    "remove-dependency": (204, 204,   403,   403,     404,     404,    204,  204),
}  # fmt: skip


def test_the_table_covers_every_action_and_actor() -> None:
    assert set(EXPECTED) == set(ACTIONS)
    assert all(len(row) == len(ACTORS) for row in EXPECTED.values())
    assert {task_action for _, task_action in ACTIONS.values()} == set(TaskAction)


@pytest.mark.parametrize("actor_name", ACTORS)
@pytest.mark.parametrize("action", list(ACTIONS))
async def test_permission_matrix(
    client: httpx.AsyncClient, world: World, action: str, actor_name: str
) -> None:
    task = await create_task(client, world.owner, world.project_id,
                             assigneeId=world.assignee.id)
    actor = world.actor(actor_name)
    perform, task_action = ACTIONS[action]
    response = await perform(client, world, actor, task)
    expected = EXPECTED[action][ACTORS.index(actor_name)]
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
    after = await client.get(f"/v1/tasks/{task['id']}", headers=world.owner.headers)
    if action == "delete":
        assert after.status_code == (404 if expected == 204 else 200)
    if expected in {403, 404} and action != "delete":
        assert after.json()["version"] == 1
    if action == "add-dependency":
        assert len(after.json()["dependsOn"]) == (1 if expected == 204 else 0)
    if action == "remove-dependency":
        assert len(after.json()["dependsOn"]) == (0 if expected == 204 else 1)


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
