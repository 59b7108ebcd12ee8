"""Who is notified of what (API.md, Notifications), driven by real outbox events handled by
the real consumers; the actor is never notified of their own action."""

from __future__ import annotations

import uuid

import httpx

from pantherahive.domains.projects.events import MemberAdded
from pantherahive.domains.tasks.events import DependencyAdded, TaskAssigned, TaskStatusChanged
from pantherahive.infra.bus.consumer import Event
from tests.conftest import TenantHandle, add_user, create_tenant
from tests.domains.notifications.conftest import (
    emit_event,
    notifications_of,
    platform,
    process_events,
    task_created,
)

PROJECT = uuid.uuid4()


async def _team(napp: httpx.AsyncClient) -> TenantHandle:
    tenant = await create_tenant(napp)
    tenant.users["ADMIN"] = tenant.admin
    for role in ("MANAGER", "MEMBER", "MEMBER2"):
        tenant.users[role] = await add_user(napp, tenant, role.rstrip("2"))
    return tenant


async def _task(napp: httpx.AsyncClient, tenant: TenantHandle, *, reporter: str,
                title: str, depends_on: list[str] | None = None,
                assignee: str | None = None) -> str:
    task_id = str(uuid.uuid4())
    await emit_event(napp, tenant.id, task_created(PROJECT, title=title, reporter=reporter,
                                                   assignee=assignee, depends_on=depends_on),
                     subject_id=task_id, actor_id=reporter)
    return task_id


async def test_welcome_on_user_created_and_reading(napp: httpx.AsyncClient) -> None:
    tenant = await _team(napp)
    member = tenant.users["MEMBER"]
    await process_events(napp)
    welcome = await notifications_of(napp, member.headers, "account.welcome")
    assert len(welcome) == 1
    assert welcome[0]["title"] == "Welcome to PantheraHive"
    assert welcome[0]["readAt"] is None
    assert welcome[0]["data"]["username"] == member.username

    count = await napp.get("/v1/notifications/unread-count", headers=member.headers)
    assert count.json() == {"count": 1}
    read = await napp.post(f"/v1/notifications/{welcome[0]['id']}/read", headers=member.headers)
    assert read.status_code == 204
    unread = await napp.get("/v1/notifications?unread=true", headers=member.headers)
    assert unread.json()["items"] == []
    # another user's notification is invisible: 404, as is a malformed or unknown id
    other = await napp.post(f"/v1/notifications/{welcome[0]['id']}/read",
                            headers=tenant.users["MANAGER"].headers)
    assert other.status_code == 404
    assert (await napp.get("/v1/notifications")).status_code == 401


async def test_task_assigned_status_changed_and_actor_excluded(napp: httpx.AsyncClient) -> None:
    tenant = await _team(napp)
    manager, member, member2 = (tenant.users[r] for r in ("MANAGER", "MEMBER", "MEMBER2"))
    task = await _task(napp, tenant, reporter=manager.id, title="Ship it")
    # the manager assigns the member: the member is told, the manager (actor) is not
    await emit_event(napp, tenant.id, TaskAssigned(project_id=PROJECT, assignee_id=member.id,
                                                      previous_assignee_id=None),
                     subject_id=task, actor_id=manager.id)
    # the member moves it: the reporter is told, the member (actor) is not
    await emit_event(napp, tenant.id, TaskStatusChanged(project_id=PROJECT, from_="TODO",
                                                           to="IN_PROGRESS"),
                     subject_id=task, actor_id=member.id)
    # someone assigning themself is not notified
    own = await _task(napp, tenant, reporter=member2.id, title="Mine")
    await emit_event(napp, tenant.id, TaskAssigned(project_id=PROJECT, assignee_id=member2.id,
                                                      previous_assignee_id=None),
                     subject_id=own, actor_id=member2.id)
    await process_events(napp)

    assigned = await notifications_of(napp, member.headers, "task.assigned")
    assert [n["data"]["taskId"] for n in assigned] == [task]
    assert "Ship it" in assigned[0]["title"]
    assert await notifications_of(napp, manager.headers, "task.assigned") == []
    assert await notifications_of(napp, member2.headers, "task.assigned") == []

    changed = await notifications_of(napp, manager.headers, "task.status_changed")
    assert len(changed) == 1
    assert (changed[0]["data"]["from"], changed[0]["data"]["to"]) == ("TODO", "IN_PROGRESS")
    assert await notifications_of(napp, member.headers, "task.status_changed") == []

    # a status change by a third person reaches both reporter and assignee
    await emit_event(napp, tenant.id, TaskStatusChanged(project_id=PROJECT, from_="IN_PROGRESS",
                                                           to="IN_REVIEW"),
                     subject_id=task, actor_id=tenant.admin.id)
    await process_events(napp)
    assert len(await notifications_of(napp, manager.headers, "task.status_changed")) == 2
    assert len(await notifications_of(napp, member.headers, "task.status_changed")) == 1


async def test_unblocked_when_the_last_dependency_is_done(napp: httpx.AsyncClient) -> None:
    tenant = await _team(napp)
    manager, member, member2 = (tenant.users[r] for r in ("MANAGER", "MEMBER", "MEMBER2"))
    first = await _task(napp, tenant, reporter=manager.id, title="Foundation")
    second = await _task(napp, tenant, reporter=manager.id, title="Walls")
    roof = await _task(napp, tenant, reporter=manager.id, title="Roof", assignee=member2.id,
                       depends_on=[first])
    await emit_event(napp, tenant.id, DependencyAdded(project_id=PROJECT, depends_on_id=second),
                     subject_id=roof, actor_id=manager.id)
    await emit_event(napp, tenant.id, TaskStatusChanged(project_id=PROJECT, from_="TODO",
                                                           to="DONE"),
                     subject_id=first, actor_id=member.id)
    await process_events(napp)
    assert await notifications_of(napp, member2.headers, "task.unblocked") == []  # Walls open

    await emit_event(napp, tenant.id, TaskStatusChanged(project_id=PROJECT, from_="TODO",
                                                           to="DONE"),
                     subject_id=second, actor_id=member.id)
    await process_events(napp)
    unblocked = await notifications_of(napp, member2.headers, "task.unblocked")
    assert len(unblocked) == 1
    assert unblocked[0]["data"]["taskId"] == roof
    assert unblocked[0]["data"]["dependencyId"] == second


async def test_member_added_and_idempotent_on_event_id(napp: httpx.AsyncClient) -> None:
    tenant = await _team(napp)
    manager, member = tenant.users["MANAGER"], tenant.users["MEMBER"]
    project = str(uuid.uuid4())
    await emit_event(napp, tenant.id, MemberAdded(user_id=member.id, role="EDITOR",
                                                          project_name="Apollo"),
                     subject_id=project, actor_id=manager.id)
    await emit_event(napp, tenant.id, MemberAdded(user_id=manager.id, role="VIEWER",
                                                          project_name="Apollo"),
                     subject_id=project, actor_id=manager.id)
    await process_events(napp)
    added = await notifications_of(napp, member.headers, "project.member_added")
    assert [n["data"]["projectName"] for n in added] == ["Apollo"]
    assert added[0]["data"]["role"] == "EDITOR"
    assert await notifications_of(napp, manager.headers, "project.member_added") == []

    # the same event delivered twice creates one notification
    task = await _task(napp, tenant, reporter=manager.id, title="Twice")
    await process_events(napp)
    from datetime import UTC, datetime

    event = Event(id=uuid.uuid4(), type="task.assigned", version=1,
                  tenant_id=uuid.UUID(tenant.id), occurred_at=datetime.now(UTC),
                  actor_id=uuid.UUID(manager.id), subject_type="task", subject_id=task,
                  data=TaskAssigned(project_id=PROJECT, assignee_id=member.id,
                                    previous_assignee_id=None).to_json())
    from pantherahive.infra.db.engine import set_tenant

    (consumer,) = platform(napp).notifications.consumers
    for _ in range(2):
        async with platform(napp).db.sessions() as session:
            await set_tenant(session, tenant.id)
            await consumer.handler(session, event)
            await session.commit()
    assert len(await notifications_of(napp, member.headers, "task.assigned")) == 1


async def test_read_all_and_cursor_pagination(napp: httpx.AsyncClient) -> None:
    tenant = await _team(napp)
    manager, member = tenant.users["MANAGER"], tenant.users["MEMBER"]
    for i in range(5):
        await emit_event(napp, tenant.id, MemberAdded(user_id=member.id, role="VIEWER",
                                                              project_name=f"P{i}"),
                         subject_id=str(uuid.uuid4()), actor_id=manager.id)
    await process_events(napp)
    seen: list[str] = []
    cursor = None
    while True:
        url = "/v1/notifications?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await napp.get(url, headers=member.headers)).json()
        seen += [n["id"] for n in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 6  # five projects + welcome
    bad = await napp.get("/v1/notifications?cursor=%%%", headers=member.headers)
    assert bad.status_code == 422
    read_all = await napp.post("/v1/notifications/read-all", headers=member.headers)
    assert read_all.status_code == 204
    count = await napp.get("/v1/notifications/unread-count", headers=member.headers)
    assert count.json()["count"] == 0
