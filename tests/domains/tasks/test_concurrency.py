"""Task writes racing other requests, made deterministic: one side is a transaction the
test holds open (the service called in a session of its own), the other a real request
that must wait for it, which the test sees in ``pg_stat_activity`` before committing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.projects import service as projects_service
from pantherahive.domains.tasks import service
from pantherahive.domains.tasks.handlers import CONSUMERS as TASK_CONSUMERS
from pantherahive.domains.tasks.schemas import TaskCreate, TaskUpdate
from pantherahive.infra.bus.embedded import drain
from pantherahive.infra.db.engine import set_tenant
from pantherahive.infra.security.principal import AuthContext, Role
from tests.conftest import Actor, unique
from tests.domains.tasks.helpers import World, create_project, create_task, put_member
from tests.support.db import database_url
from tests.support.servers import owner_connection


def _auth(world: World, actor: Actor) -> AuthContext:
    return AuthContext(UUID(world.tenant.id), UUID(actor.id), Role(actor.role))


@asynccontextmanager
async def _held_transaction(client: httpx.AsyncClient, world: World
                            ) -> AsyncIterator[AsyncSession]:
    """A transaction in the caller's tenant, as a request has; the test decides when it
    commits (leaving without committing rolls back)."""
    async with client.app.state.platform.db.sessions() as session:  # type: ignore[attr-defined]
        await set_tenant(session, world.tenant.id)
        yield session


@asynccontextmanager
async def _watcher() -> AsyncIterator[asyncpg.Connection]:
    conn = await owner_connection(database_url())
    try:
        yield conn
    finally:
        await conn.close()


async def _until_blocked(watcher: asyncpg.Connection, request: asyncio.Task[Any],
                         statement: str, seconds: float = 30.0) -> None:
    """Return once ``request`` has finished or a backend waits for a lock while running a
    statement containing ``statement``; fail after a generous ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not request.done():
        waiting = await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE $1", f"%{statement}%")
        if waiting:
            return
        assert loop.time() < deadline, f"neither finished nor blocked on {statement!r}"
        await asyncio.sleep(0.005)


async def _task_count(watcher: asyncpg.Connection, project_id: str) -> int:
    count: int = await watcher.fetchval(
        "SELECT count(*) FROM tasks.tasks WHERE project_id = $1", UUID(project_id))
    return count


async def test_a_project_delete_waits_for_a_task_being_created(
    client: httpx.AsyncClient, world: World
) -> None:
    """The task commits first and the delete's project.deleted then removes it. Without the
    lock the delete committed at once, the consumer could run before the create
    committed, and the task outlived its project."""
    project_id = await create_project(client, world.owner)
    async with _watcher() as watcher:
        async with _held_transaction(client, world) as session:
            await service.create_task(session, _auth(world, world.owner), UUID(project_id),
                                      body=TaskCreate(title="racing the delete",
                                                      assignee_id=UUID(world.owner.id)))
            deleting = asyncio.create_task(
                client.delete(f"/v1/projects/{project_id}", headers=world.owner.headers))
            await _until_blocked(watcher, deleting, "FOR UPDATE OF projects")
            assert not deleting.done(), "the delete did not wait for the task being created"
            await session.commit()
        assert (await deleting).status_code == 204
        await drain(client.app.state.platform.db, TASK_CONSUMERS)  # type: ignore[attr-defined]
        assert await _task_count(watcher, project_id) == 0


async def test_a_task_create_waits_for_a_project_delete_and_is_404(
    client: httpx.AsyncClient, world: World
) -> None:
    """The other order: the delete holds the row, the create waits, then finds no project
    (without the lock it read the uncommitted delete's old row and answered 201)."""
    project_id = await create_project(client, world.owner)
    async with _watcher() as watcher:
        async with _held_transaction(client, world) as session:
            await projects_service.delete_project(session, _auth(world, world.owner),
                                                  UUID(project_id), if_match=None)
            creating = asyncio.create_task(client.post(
                f"/v1/projects/{project_id}/tasks", headers=world.editor.headers,
                json={"title": "too late"}))
            await _until_blocked(watcher, creating, "projects.projects p%FOR KEY SHARE")
            assert not creating.done(), "the create did not wait for the project delete"
            await session.commit()
        response = await creating
        assert response.status_code == 404, response.text
        assert await _task_count(watcher, project_id) == 0


async def test_a_member_removal_waits_for_their_assignment(
    client: httpx.AsyncClient, world: World
) -> None:
    """Assigning locks the assignee's membership: their removal waits, and its
    project.member_removed then unassigns them. Without the lock the removal (and its
    consumer) could finish first, leaving a non-member assigned."""
    project_id = await create_project(client, world.owner)
    await put_member(client, world.owner, project_id, world.editor.id, "EDITOR")
    task = await create_task(client, world.owner, project_id)
    async with _watcher() as watcher:
        async with _held_transaction(client, world) as session:
            assigned = await service.update_task(
                session, _auth(world, world.owner), UUID(task["id"]),
                body=TaskUpdate(assignee_id=UUID(world.editor.id)))
            assert assigned.assignee_id == UUID(world.editor.id)
            removing = asyncio.create_task(client.delete(
                f"/v1/projects/{project_id}/members/{world.editor.id}",
                headers=world.owner.headers))
            await _until_blocked(watcher, removing, "DELETE FROM projects.members")
            assert not removing.done(), "the removal did not wait for the assignment"
            await session.commit()
        assert (await removing).status_code == 204
    await drain(client.app.state.platform.db, TASK_CONSUMERS)  # type: ignore[attr-defined]
    after = await client.get(f"/v1/tasks/{task['id']}", headers=world.owner.headers)
    assert after.json()["assigneeId"] is None


async def test_twenty_concurrent_creations_with_one_key_create_one_task(
    client: httpx.AsyncClient, world: World
) -> None:
    project_id = await create_project(client, world.owner)
    path = f"/v1/projects/{project_id}/tasks"
    await put_member(client, world.owner, project_id, world.editor.id, "EDITOR")
    headers = world.editor.headers | {"Idempotency-Key": unique("create-task")}
    body = {"title": "Exactly once", "priority": "HIGH", "assigneeId": world.owner.id}

    responses = await asyncio.gather(*(client.post(path, headers=headers, json=body)
                                       for _ in range(20)))

    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert {r.content for r in responses} == {responses[0].content}
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 19
    assert {r.headers["etag"] for r in responses} == {'"1"'}
    task_id = responses[0].json()["id"]
    async with _watcher() as watcher:
        assert await _task_count(watcher, project_id) == 1
        created = await watcher.fetchval(
            "SELECT count(*) FROM bus.outbox WHERE type = 'task.created' AND subject_id = $1",
            task_id)
    assert created == 1

    replay = await client.post(path, headers=headers, json=body)
    assert (replay.status_code, replay.json()["id"]) == (201, task_id)
    assert replay.headers["idempotent-replayed"] == "true"
    different = await client.post(path, headers=headers, json={**body, "title": "Twice"})
    assert different.status_code == 422
    async with _watcher() as watcher:
        assert await _task_count(watcher, project_id) == 1
