"""Tasks' tables (schema ``tasks``); the DDL itself lives in the migrations."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Computed, Date, Integer, SmallInteger, String, Text
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from pantherahive.infra.db.base import Base, CreatedAt, TenantRow, Timestamp, Uuid

SCHEMA = {"schema": "tasks"}


class Task(TenantRow, Base):
    __tablename__ = "tasks"
    __table_args__ = SCHEMA

    project_id: Mapped[Uuid]
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12))
    priority: Mapped[str] = mapped_column(String(6))
    assignee_id: Mapped[Uuid | None]
    reporter_id: Mapped[Uuid]
    due_date: Mapped[date | None] = mapped_column(Date)
    labels: Mapped[list[str]] = mapped_column(ARRAY(Text))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]
    completed_at: Mapped[Timestamp | None]
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

    task_id: Mapped[Uuid] = mapped_column(primary_key=True)
    depends_on_id: Mapped[Uuid] = mapped_column(primary_key=True)
    tenant_id: Mapped[Uuid]
    project_id: Mapped[Uuid]
    created_at: Mapped[CreatedAt]
