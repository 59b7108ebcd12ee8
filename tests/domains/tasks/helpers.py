"""Helpers for the tasks tests: a project with one member of every kind, tasks made through
the API, and the tenant's outbox read the way a consumer would (app role, tenant scope)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import Actor, TenantHandle, add_user, create_tenant, unique
from tests.support.db import outbox as outbox  # shared with the other domains' tests


@dataclass
class World:
    """One tenant, one project owned by a MANAGER, and a user for every relationship."""

    tenant: TenantHandle
    project_id: str
    admin: Actor  # tenant ADMIN, not a member
    owner: Actor  # MANAGER who created the project
    editor: Actor  # MEMBER with project role EDITOR
    viewer: Actor  # MEMBER with project role VIEWER
    assignee: Actor  # MEMBER with project role VIEWER, assigned the tasks made by ``task``
    outsider: Actor  # MEMBER of the tenant, not of the project
    manager_outsider: Actor  # MANAGER of the tenant, not of the project
    admin_viewer: Actor  # another ADMIN, who is also a VIEWER of the project

    def actor(self, name: str) -> Actor:
        actor: Actor = getattr(self, name)
        return actor


async def create_project(client: httpx.AsyncClient, actor: Actor) -> str:
    response = await client.post(
        "/v1/projects", headers=actor.headers, json={"name": unique("project")}
    )
    assert response.status_code == 201, response.text
    project_id: str = response.json()["id"]
    return project_id


async def put_member(
    client: httpx.AsyncClient, actor: Actor, project_id: str, user_id: str, role: str
) -> None:
    response = await client.put(
        f"/v1/projects/{project_id}/members/{user_id}", headers=actor.headers, json={"role": role}
    )
    assert response.status_code == 200, response.text


async def build_world(client: httpx.AsyncClient) -> World:
    tenant = await create_tenant(client)
    owner = await add_user(client, tenant, "MANAGER")
    editor, viewer, assignee, outsider = [
        await add_user(client, tenant, "MEMBER") for _ in range(4)
    ]
    manager_outsider = await add_user(client, tenant, "MANAGER")
    admin_viewer = await add_user(client, tenant, "ADMIN")
    project_id = await create_project(client, owner)
    for member, role in ((editor, "EDITOR"), (viewer, "VIEWER"), (assignee, "VIEWER"),
                         (admin_viewer, "VIEWER")):
        await put_member(client, owner, project_id, member.id, role)
    return World(tenant, project_id, tenant.admin, owner, editor, viewer, assignee, outsider,
                 manager_outsider, admin_viewer)


async def create_task(
    client: httpx.AsyncClient, actor: Actor, project_id: str, **fields: Any
) -> dict[str, Any]:
    body = {"title": fields.pop("title", unique("task")), **fields}
    response = await client.post(
        f"/v1/projects/{project_id}/tasks", headers=actor.headers, json=body
    )
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def depend(
    client: httpx.AsyncClient, actor: Actor, task_id: str, depends_on_id: str
) -> httpx.Response:
    return await client.put(
        f"/v1/tasks/{task_id}/dependencies/{depends_on_id}", headers=actor.headers
    )
