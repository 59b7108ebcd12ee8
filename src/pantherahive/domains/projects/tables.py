"""Projects' tables (schema ``projects``); the DDL itself lives in the migrations."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from sqlalchemy import Date, ForeignKey, Integer, String, Text
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.orm import Mapped, mapped_column

from pantherahive.infra.db.base import Base, CreatedAt, TenantRow, Timestamps, Uuid

SCHEMA = {"schema": "projects"}


class Project(TenantRow, Timestamps, Base):
    __tablename__ = "projects"
    __table_args__ = SCHEMA

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[Uuid]
    status: Mapped[str] = mapped_column(String(16))
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Member(Base):
    """One row per person on a project; the owner has a row too, with role OWNER."""

    __tablename__ = "members"
    __table_args__ = SCHEMA

    project_id: Mapped[UUID] = mapped_column(
        PgUUID(as_uuid=True),
        ForeignKey("projects.projects.id", ondelete="CASCADE"),
        primary_key=True,
    )
    user_id: Mapped[Uuid] = mapped_column(primary_key=True)
    tenant_id: Mapped[Uuid]
    role: Mapped[str] = mapped_column(String(8))
    added_at: Mapped[CreatedAt]
