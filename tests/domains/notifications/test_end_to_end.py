"""The rules through the real projects and tasks APIs: project membership, assignment,
a status change by the assignee, and the dependent task unblocked."""

from __future__ import annotations

import httpx

from tests.conftest import add_user, create_tenant
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
