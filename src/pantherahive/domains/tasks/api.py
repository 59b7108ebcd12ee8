"""Tasks' public face: the only module other services may import.

Other services react to tasks through its events (``events.py``); this module exposes the
vocabulary they need to read those events and the one lookup they may do directly.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.tasks import events
from pantherahive.domains.tasks.repository import TaskRepository
from pantherahive.domains.tasks.schemas import TaskPriority, TaskStatus

__all__ = ["TaskPriority", "TaskStatus", "events", "task_project_id"]


async def task_project_id(session: AsyncSession, tenant_id: UUID, task_id: UUID) -> UUID | None:
    """The project a task of this tenant belongs to, None if there is no such task."""
    found = await TaskRepository(session, tenant_id).nodes([task_id])
    row = found.get(task_id)
    return row.project_id if row is not None else None
