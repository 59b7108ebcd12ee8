"""What tasks does when other services' events arrive.

The runtime calls each handler inside a transaction already scoped to ``event.tenant_id``
and commits it together with its record of the event, so a handler only has to be
idempotent against a redelivery that arrives *after* a crash: both are (a second delete
finds nothing, a second unassignment finds nothing assigned).
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.clock import now
from pantherahive.core.events import EventData
from pantherahive.domains.projects.api import is_project_member
from pantherahive.domains.projects.events import MemberRemoved, ProjectDeleted
from pantherahive.domains.tasks import events
from pantherahive.domains.tasks.repository import TaskRepository
from pantherahive.infra.bus.consumer import Event, on, subscribe
from pantherahive.infra.bus.outbox import emit


async def on_project_deleted(session: AsyncSession, event: Event, _data: ProjectDeleted) -> None:
    """A deleted project's tasks and their dependency edges go with it. (Until this runs,
    its tasks are already 404: their project is.) The deletion is announced, as every
    change of tasks' rows is, by a derived event (project.deleted is the audited one)."""
    project_id = UUID(event.subject_id)
    count = await TaskRepository(session, event.tenant_id).delete_project_tasks(project_id)
    if count:
        await emit(
            session, events.ProjectTasksDeleted(count=count), subject_id=project_id,
            tenant_id=event.tenant_id, actor_id=event.actor_id, audited=False,
        )


async def on_member_removed(session: AsyncSession, event: Event, data: MemberRemoved) -> None:
    """Someone who left a project keeps no task there. A late event for a user who has
    been added back since is ignored."""
    project_id = UUID(event.subject_id)
    user_id = data.user_id
    if await is_project_member(session, project_id, user_id):
        return
    repo = TaskRepository(session, event.tenant_id)
    for task_id in await repo.unassign(project_id, user_id, now()):
        derived: tuple[EventData, ...] = (
            events.TaskUpdated(
                project_id=project_id, changes={"assigneeId": [str(user_id), None]}
            ),
            events.TaskAssigned(
                project_id=project_id, assignee_id=None, previous_assignee_id=user_id
            ),
        )
        for payload in derived:
            # Derived from the membership change, which is the audited event.
            await emit(
                session, payload, subject_id=task_id, tenant_id=event.tenant_id,
                actor_id=event.actor_id, audited=False,
            )


CONSUMERS = [
    subscribe("tasks.project_deleted", on(ProjectDeleted, on_project_deleted)),
    subscribe("tasks.member_removed", on(MemberRemoved, on_member_removed)),
]
