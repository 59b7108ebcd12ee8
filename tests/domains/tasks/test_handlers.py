"""Tasks' reactions to projects' events, called the way the runtime calls them: in a
session scoped to the event's tenant, committed afterwards."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text

from pantherahive.domains.tasks.handlers import CONSUMERS
from pantherahive.infra.bus.consumer import Event, Handler
from pantherahive.infra.db.engine import set_tenant
from tests.domains.tasks.helpers import World, create_project, create_task, depend, outbox

# Handlers are called through their consumer, as the runtime does: the event's data is
# parsed into its schema on the way.
_BY_NAME = {spec.name: spec for spec in CONSUMERS}
on_project_deleted = _BY_NAME["tasks.project_deleted"].handler
on_member_removed = _BY_NAME["tasks.member_removed"].handler


def _event(world: World, event_type: str, project_id: str, data: dict[str, Any]) -> Event:
    return Event(
        id=uuid.uuid4(), type=event_type, version=1, tenant_id=uuid.UUID(world.tenant.id),
        occurred_at=datetime.now(UTC), actor_id=uuid.UUID(world.owner.id),
        subject_type="project", subject_id=project_id, data=data,
    )


async def _handle(client: httpx.AsyncClient, handler: Handler, event: Event) -> None:
    db = client.app.state.platform.db  # type: ignore[attr-defined]
    async with db.sessions() as session:
        await set_tenant(session, event.tenant_id)
        await handler(session, event)
        await session.commit()


async def _count(client: httpx.AsyncClient, world: World, sql: str, project_id: str) -> int:
    db = client.app.state.platform.db  # type: ignore[attr-defined]
    async with db.sessions() as session:
        await set_tenant(session, world.tenant.id)
        value = (await session.execute(text(sql), {"p": project_id})).scalar_one()
        await session.rollback()
    return int(value)


def test_consumers_are_declared() -> None:
    wanted = {spec.name: spec for spec in CONSUMERS}
    assert wanted["tasks.project_deleted"].wants("project.deleted")
    assert not wanted["tasks.project_deleted"].wants("project.updated")
    assert wanted["tasks.member_removed"].wants("project.member_removed")


async def test_project_deleted_removes_tasks_and_edges(
    client: httpx.AsyncClient, world: World
) -> None:
    project_id = await create_project(client, world.owner)
    kept = await create_task(client, world.owner, world.project_id)
    a = await create_task(client, world.owner, project_id)
    b = await create_task(client, world.owner, project_id)
    assert (await depend(client, world.owner, b["id"], a["id"])).status_code == 204
    edges = "SELECT count(*) FROM tasks.task_dependencies WHERE project_id = CAST(:p AS uuid)"
    tasks = "SELECT count(*) FROM tasks.tasks WHERE project_id = CAST(:p AS uuid)"
    assert await _count(client, world, edges, project_id) == 1

    event = _event(world, "project.deleted", project_id, {"name": "x", "memberIds": []})
    await _handle(client, on_project_deleted, event)
    assert await _count(client, world, tasks, project_id) == 0
    assert await _count(client, world, edges, project_id) == 0
    await _handle(client, on_project_deleted, event)  # a redelivery finds nothing to do
    assert await _count(client, world, tasks, project_id) == 0
    # Other projects' tasks are untouched.
    response = await client.get(f"/v1/tasks/{kept['id']}", headers=world.owner.headers)
    assert response.status_code == 200


async def test_member_removed_unassigns_their_tasks(
    client: httpx.AsyncClient, world: World
) -> None:
    project_id = await create_project(client, world.owner)
    for user in (world.editor, world.viewer):
        await client.put(f"/v1/projects/{project_id}/members/{user.id}",
                         headers=world.owner.headers, json={"role": "EDITOR"})
    leaving = await create_task(client, world.owner, project_id, assigneeId=world.editor.id)
    staying = await create_task(client, world.owner, project_id, assigneeId=world.viewer.id)
    elsewhere = await create_task(client, world.owner, world.project_id,
                                  assigneeId=world.editor.id)
    removed = await client.delete(f"/v1/projects/{project_id}/members/{world.editor.id}",
                                  headers=world.owner.headers)
    assert removed.status_code == 204

    event = _event(world, "project.member_removed", project_id,
                   {"userId": world.editor.id, "role": "EDITOR"})
    await _handle(client, on_member_removed, event)
    await _handle(client, on_member_removed, event)  # idempotent

    def get(task: dict[str, Any]) -> Any:
        return client.get(f"/v1/tasks/{task['id']}", headers=world.owner.headers)

    after = (await get(leaving)).json()
    assert after["assigneeId"] is None
    assert after["version"] == 2
    assert (await get(staying)).json()["assigneeId"] == world.viewer.id
    assert (await get(elsewhere)).json()["assigneeId"] == world.editor.id
    assigned = [e for e in await outbox(client, world.tenant.id, subject_id=leaving["id"])
                if e["type"] == "task.assigned"]
    assert assigned[-1]["data"] == {"projectId": project_id, "assigneeId": None,
                                    "previousAssigneeId": world.editor.id}


async def test_member_removed_is_ignored_once_they_are_back(
    client: httpx.AsyncClient, world: World
) -> None:
    task = await create_task(client, world.owner, world.project_id,
                             assigneeId=world.assignee.id)
    event = _event(world, "project.member_removed", world.project_id,
                   {"userId": world.assignee.id, "role": "VIEWER"})
    await _handle(client, on_member_removed, event)
    after = (await client.get(f"/v1/tasks/{task['id']}", headers=world.owner.headers)).json()
    assert (after["assigneeId"], after["version"]) == (world.assignee.id, 1)
