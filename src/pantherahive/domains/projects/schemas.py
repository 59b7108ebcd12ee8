"""Projects' wire schemas (the seed's Project, and members)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field

from pantherahive.core.schemas import (
    ApiModel,
    Description,
    NotNull,
    RequestModel,
    StorableDate,
    stripped_text,
)
from pantherahive.domains.projects.permissions import ProjectRole


class ProjectStatus(StrEnum):
    ACTIVE = "ACTIVE"
    ARCHIVED = "ARCHIVED"
    ON_HOLD = "ON_HOLD"
    COMPLETED = "COMPLETED"


ProjectName = Annotated[str, stripped_text(200)]


class ProjectRead(ApiModel):
    id: UUID
    name: str
    description: str | None
    owner_id: UUID
    status: ProjectStatus
    start_date: date | None
    end_date: date | None
    version: int = Field(description="Increments on every change; also sent as the ETag.")
    created_at: datetime
    updated_at: datetime


class ProjectCreate(RequestModel):
    name: ProjectName
    description: Description | None = None
    owner_id: UUID | None = Field(
        default=None, description="An ACTIVE user of the tenant; defaults to the caller."
    )
    status: ProjectStatus = ProjectStatus.ACTIVE
    start_date: StorableDate | None = None
    end_date: StorableDate | None = Field(default=None, description="On or after startDate.")


class ProjectUpdate(RequestModel):
    """Partial update: only the fields sent change; ``null`` clears description and dates
    (name, ownerId and status cannot be null)."""

    name: Annotated[ProjectName | None, NotNull] = None
    description: Description | None = None
    owner_id: Annotated[UUID | None, NotNull] = None
    status: Annotated[ProjectStatus | None, NotNull] = None
    start_date: StorableDate | None = None
    end_date: StorableDate | None = None


class MemberRead(ApiModel):
    user_id: UUID
    role: ProjectRole
    added_at: datetime


class MemberPut(RequestModel):
    role: Literal[ProjectRole.EDITOR, ProjectRole.VIEWER] = Field(
        description="OWNER is not assignable here: it follows the project's ownerId."
    )
