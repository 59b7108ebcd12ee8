"""The events projects publish: its public contract with the rest of the platform.

Every event's subject is the project. The owner's membership is part of
``project.created`` (no separate ``member_added``); a deleted project's tasks go with it
(tasks consumes ``project.deleted``).
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from pantherahive.core.events import EventData


class ProjectCreated(EventData, type="project.created", subject="project"):
    name: str
    owner_id: UUID
    status: str
    start_date: date | None
    end_date: date | None


class ProjectUpdated(EventData, type="project.updated", subject="project"):
    """``changes``: ``{field: [old, new]}`` with camelCase field names."""

    changes: dict[str, list[Any]]


class ProjectDeleted(EventData, type="project.deleted", subject="project"):
    name: str
    member_ids: list[UUID]


class MemberAdded(EventData, type="project.member_added", subject="project"):
    user_id: UUID
    role: str
    project_name: str


class MemberUpdated(EventData, type="project.member_updated", subject="project"):
    """``changes``: ``{"role": [old, new]}``."""

    user_id: UUID
    changes: dict[str, list[Any]]


class MemberRemoved(EventData, type="project.member_removed", subject="project"):
    """``reason`` is set when the removal follows from another event
    (``user.deactivated``)."""

    user_id: UUID
    role: str
    reason: str | None = None
