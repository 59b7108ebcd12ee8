"""The rules through the real projects and tasks APIs: project membership, assignment,
a status change by the assignee, and the dependent task unblocked."""

from __future__ import annotations

import httpx

from tests.conftest import Actor, TenantHandle, add_user, create_tenant
from tests.domains.notifications.conftest import notifications_of, process_events


async def test_rules_through_the_projects_and_tasks_apis(napp: httpx.AsyncClient) -> None:
    tenant = await create_tenant(napp)
    manager = await add_user(napp, tenant, "MANAGER")
    ann = await add_user(napp, tenant, "MEMBER")
    bob = await add_user(napp, tenant, "MEMBER")
    project = await napp.post("/v1/projects", headers=manager.headers, json={"name": "Apollo"})
    assert project.status_code == 201, project.text
    pid = project.json()["id"]
    for user in (ann, bob):
        put = await napp.put(f"/v1/projects/{pid}/members/{user.id}", headers=manager.headers,
                             json={"role": "EDITOR"})
        assert put.status_code in (200, 201), put.text
    first = await napp.post(f"/v1/projects/{pid}/tasks", headers=manager.headers,
                            json={"title": "Engines", "assigneeId": ann.id})
    assert first.status_code == 201, first.text
    second = await napp.post(f"/v1/projects/{pid}/tasks", headers=manager.headers, json={
        "title": "Launch", "assigneeId": bob.id, "dependsOn": [first.json()["id"]]})
    assert second.status_code == 201, second.text
    done = await napp.patch(f"/v1/tasks/{first.json()['id']}", headers=ann.headers,
                            json={"status": "DONE"})
    assert done.status_code == 200, done.text
    await process_events(napp)

    assert len(await notifications_of(napp, ann.headers, "project.member_added")) == 1
    assert [n["data"]["taskId"] for n in await notifications_of(
        napp, ann.headers, "task.assigned")] == [first.json()["id"]]
    assert await notifications_of(napp, ann.headers, "task.status_changed") == []  # her act
    changed = await notifications_of(napp, manager.headers, "task.status_changed")
    assert [n["data"]["to"] for n in changed] == ["DONE"]  # the reporter
    assert await notifications_of(napp, manager.headers, "task.assigned") == []  # his act
    unblocked = await notifications_of(napp, bob.headers, "task.unblocked")
    assert [n["data"]["taskId"] for n in unblocked] == [second.json()["id"]]


async def _project(napp: httpx.AsyncClient) -> tuple[TenantHandle, Actor, Actor, Actor, str]:
    """A tenant, a MANAGER owning a project, and two EDITORs of it (ann, bob)."""
    tenant = await create_tenant(napp)
    manager = await add_user(napp, tenant, "MANAGER")
    ann = await add_user(napp, tenant, "MEMBER")
    bob = await add_user(napp, tenant, "MEMBER")
    project = await napp.post("/v1/projects", headers=manager.headers, json={"name": "Gemini"})
    assert project.status_code == 201, project.text
    pid: str = project.json()["id"]
    for user in (ann, bob):
        put = await napp.put(f"/v1/projects/{pid}/members/{user.id}", headers=manager.headers,
                             json={"role": "EDITOR"})
        assert put.status_code in (200, 201), put.text
    return tenant, manager, ann, bob, pid


async def _create(napp: httpx.AsyncClient, who: Actor, pid: str, **body: object) -> str:
    created = await napp.post(f"/v1/projects/{pid}/tasks", headers=who.headers, json=body)
    assert created.status_code == 201, created.text
    task_id: str = created.json()["id"]
    return task_id


async def _patch(napp: httpx.AsyncClient, who: Actor, task_id: str, **body: object) -> None:
    patched = await napp.patch(f"/v1/tasks/{task_id}", headers=who.headers, json=body)
    assert patched.status_code == 200, patched.text


async def test_unblocking_yourself_is_not_notified(napp: httpx.AsyncClient) -> None:
    _, manager, ann, _, pid = await _project(napp)
    first = await _create(napp, manager, pid, title="Fuel", assigneeId=ann.id)
    await _create(napp, manager, pid, title="Ignite", assigneeId=ann.id, dependsOn=[first])
    await _patch(napp, ann, first, status="DONE")  # ann unblocks her own task
    await process_events(napp)
    assert await notifications_of(napp, ann.headers, "task.unblocked") == []
    assert len(await notifications_of(napp, ann.headers, "task.assigned")) == 2


async def test_reassignment_reaches_the_new_assignee_only(napp: httpx.AsyncClient) -> None:
    _, manager, ann, bob, pid = await _project(napp)
    task = await _create(napp, manager, pid, title="Dock", assigneeId=ann.id)
    await _patch(napp, manager, task, assigneeId=bob.id)
    await process_events(napp)
    assert [n["data"]["taskId"] for n in await notifications_of(
        napp, bob.headers, "task.assigned")] == [task]
    assert len(await notifications_of(napp, ann.headers, "task.assigned")) == 1  # the first


async def test_status_change_reaches_reporter_and_assignee(napp: httpx.AsyncClient) -> None:
    tenant, manager, ann, _, pid = await _project(napp)
    task = await _create(napp, manager, pid, title="Orbit", assigneeId=ann.id)
    await _patch(napp, tenant.admin, task, status="IN_PROGRESS")  # by a third person
    await process_events(napp)
    for user in (manager, ann):
        changed = await notifications_of(napp, user.headers, "task.status_changed")
        assert [(n["data"]["taskId"], n["data"]["to"]) for n in changed] == [
            (task, "IN_PROGRESS")]
    assert await notifications_of(napp, tenant.admin.headers, "task.status_changed") == []


async def test_deleted_dependency_does_not_lose_the_unblocking(napp: httpx.AsyncClient) -> None:
    """C depends on A and B; B is deleted; A done → C is unblocked (the tasks API says so)
    and its assignee is told."""
    _, manager, ann, bob, pid = await _project(napp)
    a = await _create(napp, manager, pid, title="A")
    b = await _create(napp, manager, pid, title="B")
    c = await _create(napp, manager, pid, title="C", assigneeId=bob.id, dependsOn=[a, b])
    deleted = await napp.delete(f"/v1/tasks/{b}", headers=manager.headers)
    assert deleted.status_code == 204
    await process_events(napp)
    assert await notifications_of(napp, bob.headers, "task.unblocked") == []  # A is open
    await _patch(napp, ann, a, status="DONE")
    await process_events(napp)
    shown = await napp.get(f"/v1/tasks/{c}", headers=bob.headers)
    assert shown.json()["blocked"] is False
    unblocked = await notifications_of(napp, bob.headers, "task.unblocked")
    assert [(n["data"]["taskId"], n["data"]["dependencyId"]) for n in unblocked] == [(c, a)]


async def test_deleting_the_last_open_dependency_unblocks(napp: httpx.AsyncClient) -> None:
    _, manager, ann, bob, pid = await _project(napp)
    a = await _create(napp, manager, pid, title="A")
    b = await _create(napp, manager, pid, title="B")
    c = await _create(napp, manager, pid, title="C", assigneeId=bob.id, dependsOn=[a, b])
    await _patch(napp, ann, a, status="DONE")
    await process_events(napp)
    assert await notifications_of(napp, bob.headers, "task.unblocked") == []  # B is open
    assert (await napp.delete(f"/v1/tasks/{b}", headers=manager.headers)).status_code == 204
    await process_events(napp)
    assert (await napp.get(f"/v1/tasks/{c}", headers=bob.headers)).json()["blocked"] is False
    unblocked = await notifications_of(napp, bob.headers, "task.unblocked")
    assert [(n["data"]["taskId"], n["data"]["dependencyId"]) for n in unblocked] == [(c, b)]
    assert "B was deleted" in unblocked[0]["body"]
