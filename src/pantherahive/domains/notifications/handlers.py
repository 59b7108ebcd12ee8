"""What notifications does when other services' events arrive.

Rules (API.md, Notifications): a task assigned to you; a task you report or are assigned
to changes status; you are added to a project; a dependency of your task is done
(``task.unblocked``, derived here from ``task.status_changed`` and a read model of the
tasks' dependencies); welcome on ``user.created``. The actor is never notified of their own
action. Every notification is unique per (event, user, type), so a redelivered event
creates nothing twice. The same consumer turns every event into webhook deliveries.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.notifications import catalog
from pantherahive.domains.notifications.realtime import Publisher
from pantherahive.domains.notifications.repository import NotificationRepository, TaskViewRow
from pantherahive.domains.notifications.service import Draft, NotificationService, WebhookEvent
from pantherahive.infra.bus.consumer import ConsumerSpec, Event
from pantherahive.settings import get_settings

CLOSED = frozenset({"DONE", "CANCELLED"})
_service: list[NotificationService] = []


def configure(service: NotificationService) -> None:
    """The process's service (publisher, links); the app sets it when it builds its platform."""
    _service[:] = [service]


def service() -> NotificationService:
    if not _service:
        settings = get_settings()
        _service.append(NotificationService(publisher=Publisher(settings.redis_url),
                                            base_url=settings.app_base_url))
    return _service[0]


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


def _recipients(*users: UUID | None, actor: UUID | None) -> list[UUID]:
    seen: list[UUID] = []
    for user in users:
        if user is not None and user != actor and user not in seen:
            seen.append(user)
    return seen


async def on_user_created(session: AsyncSession, event: Event) -> None:
    user_id = _uuid(event.subject_id)
    if user_id is None:
        return
    username = str(event.data.get("username") or "")
    service().notify(session, event.tenant_id, [Draft(
        user_id=user_id, type=catalog.ACCOUNT_WELCOME, title="Welcome to PantheraHive",
        body=f"Your account {username} is ready.", data={"username": username},
        email=event.data.get("email") or None,
    )], event_id=event.id)


async def on_member_added(session: AsyncSession, event: Event) -> None:
    user_id = _uuid(event.data.get("userId"))
    name = str(event.data.get("projectName") or "a project")
    role = str(event.data.get("role") or "")
    drafts = [Draft(
        user_id=user, type=catalog.PROJECT_MEMBER_ADDED, title=f"You were added to {name}",
        body=f"You are now {role or 'a member'} of the project {name}.",
        data={"projectId": event.subject_id, "projectName": name, "role": role},
    ) for user in _recipients(user_id, actor=event.actor_id)]
    service().notify(session, event.tenant_id, drafts, event_id=event.id)


def _change(event: Event) -> tuple[str, dict[str, Any]] | None:
    """Which read-model columns this task event sets, with their values (None: nothing)."""
    data = event.data
    project = {"project": _uuid(data.get("projectId"))}
    if event.type == "task.created":
        return "created", {
            **project, "title": str(data.get("title") or "")[:200],
            "status": str(data.get("status") or "TODO"),
            "assignee": _uuid(data.get("assigneeId")),
            "reporter": _uuid(data.get("reporterId")) or event.actor_id,
            "depends_on": [u for u in (_uuid(d) for d in data.get("dependsOn") or []) if u],
        }
    if event.type == "task.updated":
        title = (data.get("changes") or {}).get("title")
        if isinstance(title, list) and len(title) == 2:
            return "title", {**project, "title": str(title[1])[:200]}
        return None
    if event.type == "task.assigned":
        return "assignee", {**project, "assignee": _uuid(data.get("assigneeId"))}
    if event.type == "task.status_changed":
        return "status", {**project, "status": str(data.get("to") or "TODO")}
    if event.type in ("task.dependency_added", "task.dependency_removed"):
        dep = _uuid(data.get("dependsOnId"))
        if dep is None:
            return None
        return event.type.removeprefix("task."), {**project, "dep": dep}
    return None


async def on_task_event(session: AsyncSession, event: Event) -> None:
    """Keep the task read model current (one statement), then apply the task rules."""
    repo = NotificationRepository(session)
    task_id = _uuid(event.subject_id)
    if task_id is None:
        return
    tenant = event.tenant_id
    if event.type == "task.deleted":
        # Its dependents lose the edge, as in tasks; if it was still open, that may have
        # been their last blocker.
        status, dependents = await repo.delete_task_view(tenant, task_id)
        if status is not None and status not in CLOSED and dependents:
            title = str(event.data.get("title") or "a task")
            service().notify(session, tenant, _unblocked_drafts(
                await repo.unblocked_among(tenant, dependents), task_id,
                f"{title} was deleted", event.actor_id), event_id=event.id)
        return
    change = _change(event)
    if change is None:
        return
    view = await repo.apply_task_change(tenant, task_id, *change)
    title = view.title or "a task"
    common = {"taskId": str(task_id), "projectId": str(view.project_id or ""), "title": title}
    drafts: list[Draft] = []
    if event.type == "task.assigned":
        drafts = [Draft(user_id=user, type=catalog.TASK_ASSIGNED,
                        title=f"Task assigned to you: {title}",
                        body=f"You are now the assignee of {title}.", data=common)
                  for user in _recipients(view.assignee_id, actor=event.actor_id)]
    elif event.type == "task.status_changed":
        old, new = event.data.get("from"), event.data.get("to")
        drafts = [Draft(user_id=user, type=catalog.TASK_STATUS_CHANGED,
                        title=f"{title}: {old} → {new}",
                        body=f"The task {title} moved from {old} to {new}.",
                        data={**common, "from": old, "to": new})
                  for user in _recipients(view.reporter_id, view.assignee_id,
                                          actor=event.actor_id)]
        if new in CLOSED and old not in CLOSED:
            drafts += _unblocked_drafts(await repo.unblocked_by(tenant, task_id), task_id,
                                        f"{title} is done", event.actor_id)
    service().notify(session, tenant, drafts, event_id=event.id)


def _unblocked_drafts(dependents: list[TaskViewRow], dependency: UUID, reason: str,
                      actor: UUID | None) -> list[Draft]:
    drafts: list[Draft] = []
    for dependent in dependents:
        title = dependent.title or "a task"
        drafts += [Draft(
            user_id=user, type=catalog.TASK_UNBLOCKED, title=f"Unblocked: {title}",
            body=f"{reason}: nothing blocks {title} any more.",
            data={"taskId": str(dependent.task_id), "projectId": str(dependent.project_id or ""),
                  "title": title, "dependencyId": str(dependency)},
        ) for user in _recipients(dependent.assignee_id, actor=actor)]
    return drafts


TASK_EVENTS = frozenset({
    "task.created", "task.updated", "task.assigned", "task.status_changed", "task.deleted",
    "task.dependency_added", "task.dependency_removed",
})


async def on_event(session: AsyncSession, event: Event) -> None:
    """One consumer for everything: webhooks need every event anyway, and each consumer
    costs the runtime a transaction, an offset and an outbox read per event."""
    if event.type == "user.created":
        await on_user_created(session, event)
    elif event.type == "project.member_added":
        await on_member_added(session, event)
    elif event.type in TASK_EVENTS:
        await on_task_event(session, event)
    service().enqueue_webhooks(session, event.tenant_id, WebhookEvent(
        event.id, event.type, event.occurred_at, orjson.dumps(event.envelope()).decode()))


CONSUMERS = [ConsumerSpec("notifications", on_event)]
