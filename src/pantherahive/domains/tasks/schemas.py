"""Tasks' wire schemas: TaskCreate / TaskUpdate / TaskRead and the schedule."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import Field, field_validator

from pantherahive.core.schemas import (
    ApiModel,
    Description,
    NotNull,
    RequestModel,
    StorableDate,
    stripped_text,
)


class TaskStatus(StrEnum):
    TODO = "TODO"
    IN_PROGRESS = "IN_PROGRESS"
    IN_REVIEW = "IN_REVIEW"
    DONE = "DONE"
    CANCELLED = "CANCELLED"


# A dependency in one of these states no longer blocks the tasks that depend on it.
CLOSED_STATUSES = frozenset({TaskStatus.DONE, TaskStatus.CANCELLED})


class TaskPriority(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    URGENT = "URGENT"


class TaskSort(StrEnum):
    CREATED = "createdAt"
    CREATED_DESC = "-createdAt"
    DUE = "dueDate"
    PRIORITY_DESC = "-priority"
    UPDATED = "updatedAt"


Title = Annotated[str, stripped_text(200)]
Label = Annotated[str, stripped_text(50)]
Labels = Annotated[list[Label], Field(max_length=20)]


def _distinct(labels: list[str] | None) -> list[str] | None:
    return list(dict.fromkeys(labels)) if labels is not None else None


class TaskRead(ApiModel):
    id: UUID
    project_id: UUID
    title: str
    description: str | None
    status: TaskStatus
    priority: TaskPriority
    assignee_id: UUID | None
    reporter_id: UUID
    due_date: date | None
    labels: list[str]
    depends_on: list[UUID] = Field(description="Ids of the tasks this one depends on.")
    blocked: bool = Field(
        description="True while any task it depends on is neither DONE nor CANCELLED."
    )
    version: int
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class TaskCreate(RequestModel):
    title: Title
    description: Description | None = None
    status: TaskStatus = TaskStatus.TODO
    priority: TaskPriority = TaskPriority.MEDIUM
    assignee_id: UUID | None = None
    due_date: StorableDate | None = None
    labels: Labels = Field(default_factory=list)
    depends_on: Annotated[list[UUID], Field(max_length=100)] = Field(
        default_factory=list, description="Tasks of the same project this one depends on."
    )

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        return _distinct(value) or []

    @field_validator("depends_on")
    @classmethod
    def _depends_on(cls, value: list[UUID]) -> list[UUID]:
        return list(dict.fromkeys(value))


class TaskUpdate(RequestModel):
    """Partial: only the fields sent change; ``null`` clears description, assignee and due
    date. The assignee (without write rights) may send ``status`` only."""

    title: Annotated[Title | None, NotNull] = None
    description: Description | None = None
    status: Annotated[TaskStatus | None, NotNull] = None
    priority: Annotated[TaskPriority | None, NotNull] = None
    assignee_id: UUID | None = None
    due_date: StorableDate | None = None
    labels: Annotated[Labels | None, NotNull] = None

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str] | None) -> list[str] | None:
        return _distinct(value)


class ScheduleItem(ApiModel):
    task_id: UUID
    title: str
    status: TaskStatus
    depth: int = Field(description="Length of the longest dependency chain below this task.")


class Schedule(ApiModel):
    items: list[ScheduleItem] = Field(
        description="Every task of the project; each comes after all tasks it depends on."
    )
    critical_path: list[UUID] = Field(
        description="The longest dependency chain, first task to do first."
    )
    length: int = Field(description="Number of tasks on the critical path.")
