"""What tasks does when other services' events arrive.

The runtime calls each handler inside a transaction already scoped to ``event.tenant_id``
and commits it together with its record of the event, so a handler only has to be
idempotent against a redelivery that arrives *after* a crash: both are (a second delete
finds nothing, a second unassignment finds nothing assigned).
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.projects.api import is_project_member
from pantherahive.domains.tasks import events
from pantherahive.domains.tasks.repository import TaskRepository
from pantherahive.domains.tasks.service import jsonable, now
from pantherahive.infra.bus.consumer import ConsumerSpec, Event
from pantherahive.infra.bus.outbox import emit

PROJECT_DELETED = "project.deleted"
PROJECT_MEMBER_REMOVED = "project.member_removed"


async def on_project_deleted(session: AsyncSession, event: Event) -> None:
    """A deleted project's tasks and their dependency edges go with it. (Until this runs,
    its tasks are already 404: their project is.) The deletion is announced, as every
    change of tasks' rows is, by a derived event (project.deleted is the audited one)."""
    project_id = UUID(event.subject_id)
    count = await TaskRepository(session, event.tenant_id).delete_project_tasks(project_id)
    if count:
        await emit(
            session, events.PROJECT_TASKS_DELETED, subject_type="project",
            subject_id=project_id, data={"count": count}, tenant_id=event.tenant_id,
            actor_id=event.actor_id, audited=False,
        )


async def on_member_removed(session: AsyncSession, event: Event) -> None:
    """Someone who left a project keeps no task there. A late event for a user who has
    been added back since is ignored."""
    project_id = UUID(event.subject_id)
    user_id = UUID(str(event.data["userId"]))
    if await is_project_member(session, project_id, user_id):
        return
    repo = TaskRepository(session, event.tenant_id)
    for task_id in await repo.unassign(project_id, user_id, now()):
        for event_type, data in (
            (events.TASK_UPDATED, {"changes": {"assigneeId": [user_id, None]}}),
            (events.TASK_ASSIGNED, {"assigneeId": None, "previousAssigneeId": user_id}),
        ):
            # Derived from the membership change, which is the audited event.
            await emit(
                session, event_type, subject_type="task", subject_id=task_id,
                data=jsonable({"projectId": project_id, **data}),
                tenant_id=event.tenant_id, actor_id=event.actor_id, audited=False,
            )


CONSUMERS: list[ConsumerSpec] = [
    ConsumerSpec("tasks.project_deleted", on_project_deleted, frozenset({PROJECT_DELETED})),
    ConsumerSpec("tasks.member_removed", on_member_removed, frozenset({PROJECT_MEMBER_REMOVED})),
]
