"""Tasks' tables (schema ``tasks``); the DDL itself lives in the migrations."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from sqlalchemy import Computed, Date, DateTime, Integer, SmallInteger, String, Text, func
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.orm import Mapped, mapped_column

from pantherahive.infra.db.base import Base

SCHEMA = {"schema": "tasks"}


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = SCHEMA

    id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True))
    project_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12))
    priority: Mapped[str] = mapped_column(String(6))
    assignee_id: Mapped[UUID | None] = mapped_column(PgUUID(as_uuid=True))
    reporter_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True))
    due_date: Mapped[date | None] = mapped_column(Date)
    labels: Mapped[list[str]] = mapped_column(ARRAY(Text))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Generated: sort keys that make every offered order a plain ascending row comparison,
    # and the full-text document.
    due_key: Mapped[date] = mapped_column(
        Date, Computed("COALESCE(due_date, DATE 'infinity')")
    )
    priority_order: Mapped[int] = mapped_column(
        SmallInteger,
        Computed(
            "CASE priority WHEN 'URGENT' THEN 0 WHEN 'HIGH' THEN 1 WHEN 'MEDIUM' THEN 2 ELSE 3 END"
        ),
    )
    search: Mapped[str] = mapped_column(
        TSVECTOR,
        Computed(
            "setweight(to_tsvector('english'::regconfig, title), 'A') || "
            "setweight(to_tsvector('english'::regconfig, COALESCE(description, '')), 'B')"
        ),
        deferred=True,
    )


class TaskDependency(Base):
    """``task_id`` depends on ``depends_on_id`` (both tasks of one project)."""

    __tablename__ = "task_dependencies"
    __table_args__ = SCHEMA

    task_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    depends_on_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True))
    project_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
