"""The events tasks publishes: its public contract with the rest of the platform.

Every event's subject is the task and its data carries ``projectId``, except
``task.project_tasks_deleted`` (subject: the project). ``task.assigned`` and
``task.status_changed`` are derived (not audited): they accompany the audited
``task.created`` / ``task.updated`` for consumers that react to one kind of change.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from pydantic import Field

from pantherahive.core.events import EventData


class _TaskEvent(EventData):
    project_id: UUID


class TaskCreated(_TaskEvent, type="task.created", subject="task"):
    title: str
    status: str
    priority: str
    assignee_id: UUID | None
    reporter_id: UUID
    due_date: date | None
    labels: list[str]
    depends_on: list[UUID]


class TaskUpdated(_TaskEvent, type="task.updated", subject="task"):
    """``changes``: ``{field: [old, new]}`` with camelCase field names."""

    changes: dict[str, list[Any]]


class TaskAssigned(_TaskEvent, type="task.assigned", subject="task"):
    """Either id may be null (assigned for the first time; unassigned)."""

    assignee_id: UUID | None
    previous_assignee_id: UUID | None


class TaskStatusChanged(_TaskEvent, type="task.status_changed", subject="task"):
    from_: str = Field(alias="from")
    to: str


class TaskDeleted(_TaskEvent, type="task.deleted", subject="task"):
    title: str


class DependencyAdded(_TaskEvent, type="task.dependency_added", subject="task"):
    depends_on_id: UUID


class DependencyRemoved(_TaskEvent, type="task.dependency_removed", subject="task"):
    depends_on_id: UUID


class ProjectTasksDeleted(EventData, type="task.project_tasks_deleted", subject="project"):
    """Derived (not audited) from ``project.deleted``, whose consumer deleted the project's
    tasks and their dependency edges."""

    count: int
