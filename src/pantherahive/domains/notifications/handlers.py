"""What notifications does when other services' events arrive.

Rules (API.md, Notifications): a task assigned to you; a task you report or are assigned
to changes status; you are added to a project; a dependency of your task is done
(``task.unblocked``, derived here from ``task.status_changed`` and a read model of the
tasks' dependencies); welcome on ``user.created``. The actor is never notified of their own
action. Every notification is unique per (event, user, type), so a redelivered event
creates nothing twice.

One consumer, ``notifications``, does it all and sees every event type: the rules
subscribe by schema (``subscribe``/``on``: each reaches its handler parsed, an unknown
version or invalid data is parked), and every event — of any type — is relayed to the
webhook subscriptions naming it. One consumer rather than a second ``webhooks`` one,
because each costs the runtime a transaction, an offset and an outbox read per event.

A run of events (the runtime's batch, one tenant, outbox order) is handled into one
:class:`Pending`, written by one explicit ``flush`` at its end: a handful of statements
per tenant instead of as many per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.identity.events import UserCreated
from pantherahive.domains.notifications import catalog
from pantherahive.domains.notifications.inbox.service import (
    Draft,
    NotificationService,
    Pending,
    WebhookEvent,
)
from pantherahive.domains.notifications.repository import TaskViewRepository, TaskViewRow
from pantherahive.domains.projects.events import MemberAdded
from pantherahive.domains.tasks.events import (
    DependencyAdded,
    DependencyRemoved,
    TaskAssigned,
    TaskCreated,
    TaskDeleted,
    TaskStatusChanged,
    TaskUpdated,
)
from pantherahive.infra.bus.consumer import ConsumerSpec, Event, on, subscribe

CLOSED = frozenset({"DONE", "CANCELLED"})
CONSUMER = "notifications"
# The run of events being handled in a session's transaction (set by ``Notifications``).
_PENDING = "notifications.pending"


def _recipients(*users: UUID | None, actor: UUID | None) -> list[UUID]:
    seen: list[UUID] = []
    for user in users:
        if user is not None and user != actor and user not in seen:
            seen.append(user)
    return seen


def _pending(session: AsyncSession) -> Pending:
    pending: Pending = session.info[_PENDING]
    return pending


def _task_id(event: Event) -> UUID:
    return UUID(event.subject_id)


async def on_user_created(session: AsyncSession, event: Event, data: UserCreated) -> None:
    _pending(session).notify(event.tenant_id, [Draft(
        user_id=UUID(event.subject_id), type=catalog.ACCOUNT_WELCOME,
        title="Welcome to PantheraHive", body=f"Your account {data.username} is ready.",
        data={"username": data.username}, email=data.email or None,
    )], event_id=event.id)


async def on_member_added(session: AsyncSession, event: Event, data: MemberAdded) -> None:
    name, role = data.project_name or "a project", data.role
    _pending(session).notify(event.tenant_id, [Draft(
        user_id=user, type=catalog.PROJECT_MEMBER_ADDED, title=f"You were added to {name}",
        body=f"You are now {role or 'a member'} of the project {name}.",
        data={"projectId": event.subject_id, "projectName": name, "role": role},
    ) for user in _recipients(data.user_id, actor=event.actor_id)], event_id=event.id)


# ---- the task read model, then the task rules ----------------------------------------------
async def _apply(session: AsyncSession, event: Event, change: str,
                 values: dict[str, Any]) -> TaskViewRow:
    """Keep the task read model current: one statement."""
    return await TaskViewRepository(session).apply_task_change(
        event.tenant_id, _task_id(event), change, values)


async def on_task_created(session: AsyncSession, event: Event, data: TaskCreated) -> None:
    await _apply(session, event, "created", {
        "project": data.project_id, "title": data.title[:200], "status": data.status,
        "assignee": data.assignee_id, "reporter": data.reporter_id or event.actor_id,
        "depends_on": data.depends_on,
    })


async def on_task_updated(session: AsyncSession, event: Event, data: TaskUpdated) -> None:
    title = data.changes.get("title")
    if isinstance(title, list) and len(title) == 2:
        await _apply(session, event, "title",
                     {"project": data.project_id, "title": str(title[1])[:200]})


async def on_dependency_added(session: AsyncSession, event: Event,
                              data: DependencyAdded) -> None:
    await _apply(session, event, "dependency_added",
                 {"project": data.project_id, "dep": data.depends_on_id})


async def on_dependency_removed(session: AsyncSession, event: Event,
                                data: DependencyRemoved) -> None:
    await _apply(session, event, "dependency_removed",
                 {"project": data.project_id, "dep": data.depends_on_id})


def _about(view: TaskViewRow, task_id: UUID) -> dict[str, Any]:
    return {"taskId": str(task_id), "projectId": str(view.project_id or ""),
            "title": view.title or "a task"}


async def on_task_assigned(session: AsyncSession, event: Event, data: TaskAssigned) -> None:
    view = await _apply(session, event, "assignee",
                        {"project": data.project_id, "assignee": data.assignee_id})
    title = view.title or "a task"
    _pending(session).notify(event.tenant_id, [Draft(
        user_id=user, type=catalog.TASK_ASSIGNED, title=f"Task assigned to you: {title}",
        body=f"You are now the assignee of {title}.", data=_about(view, _task_id(event)),
    ) for user in _recipients(view.assignee_id, actor=event.actor_id)], event_id=event.id)


async def on_task_status_changed(session: AsyncSession, event: Event,
                                 data: TaskStatusChanged) -> None:
    view = await _apply(session, event, "status",
                        {"project": data.project_id, "status": data.to})
    task_id = _task_id(event)
    title, old, new = view.title or "a task", data.from_, data.to
    drafts = [Draft(
        user_id=user, type=catalog.TASK_STATUS_CHANGED, title=f"{title}: {old} → {new}",
        body=f"The task {title} moved from {old} to {new}.",
        data={**_about(view, task_id), "from": old, "to": new},
    ) for user in _recipients(view.reporter_id, view.assignee_id, actor=event.actor_id)]
    if new in CLOSED and old not in CLOSED:
        repo = TaskViewRepository(session)
        drafts += _unblocked_drafts(await repo.unblocked_by(event.tenant_id, task_id), task_id,
                                    f"{title} is done", event.actor_id)
    _pending(session).notify(event.tenant_id, drafts, event_id=event.id)


async def on_task_deleted(session: AsyncSession, event: Event, data: TaskDeleted) -> None:
    """Its dependents lose the edge, as in tasks; if it was still open, that may have been
    their last blocker."""
    repo, task_id = TaskViewRepository(session), _task_id(event)
    status, dependents = await repo.delete_task_view(event.tenant_id, task_id)
    if status is not None and status not in CLOSED and dependents:
        _pending(session).notify(event.tenant_id, _unblocked_drafts(
            await repo.unblocked_among(event.tenant_id, dependents), task_id,
            f"{data.title or 'a task'} was deleted", event.actor_id), event_id=event.id)


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


RULES = subscribe(
    CONSUMER,
    on(UserCreated, on_user_created),
    on(MemberAdded, on_member_added),
    on(TaskCreated, on_task_created),
    on(TaskUpdated, on_task_updated),
    on(TaskAssigned, on_task_assigned),
    on(TaskStatusChanged, on_task_status_changed),
    on(TaskDeleted, on_task_deleted),
    on(DependencyAdded, on_dependency_added),
    on(DependencyRemoved, on_dependency_removed),
)


class Notifications:
    """The consumer's handlers, bound to the service the runtime hands over."""

    def __init__(self, service: NotificationService) -> None:
        self.service = service

    async def handle(self, session: AsyncSession, event: Event) -> None:
        await self.handle_run(session, [event])

    async def handle_run(self, session: AsyncSession, events: Sequence[Event]) -> None:
        """Apply the rules to each event in order and relay each to the webhooks, then
        write what they asked for with one flush."""
        pending = session.info[_PENDING] = Pending()
        try:
            for event in events:
                await RULES.handler(session, event)
                pending.relay(event.tenant_id, WebhookEvent(
                    event.id, event.type, event.occurred_at,
                    orjson.dumps(event.envelope()).decode()))
        finally:
            session.info.pop(_PENDING, None)
        await self.service.flush(session, pending)


def consumers(service: NotificationService) -> list[ConsumerSpec]:
    """Notifications' consumer, every event type (``types=None``: the webhook relay needs
    them all; the rules ignore the types they do not subscribe to)."""
    handlers = Notifications(service)
    return [ConsumerSpec(CONSUMER, handlers.handle, types=None,
                         batch_handler=handlers.handle_run)]
