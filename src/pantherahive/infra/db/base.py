"""Declarative base with a constraint naming convention (stable Alembic diffs), and the
column declarations every service's tables share.

The DDL lives in the migrations; these declarations only have to match it. Shared columns
come from mixins, whose columns SQLAlchemy places after the class's own unless told
otherwise: ``sort_order`` keeps every table's columns in the migrations' order (the order
``SELECT`` lists and result rows follow).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from sqlalchemy import DateTime, MetaData, func
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Uuid = Annotated[UUID, mapped_column(PgUUID(as_uuid=True))]
"""A ``uuid`` column (NOT NULL unless the annotation says ``Uuid | None``)."""
Timestamp = Annotated[datetime, mapped_column(DateTime(timezone=True))]
"""A ``timestamptz`` column."""
CreatedAt = Annotated[datetime, mapped_column(DateTime(timezone=True), server_default=func.now())]
"""A ``timestamptz`` column the database fills with ``now()`` when the insert leaves it out."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TenantRow:
    """A tenant's row identified by a uuid: ``id`` and ``tenant_id``, the table's first
    columns."""

    id: Mapped[Uuid] = mapped_column(primary_key=True, sort_order=-1)
    tenant_id: Mapped[Uuid] = mapped_column(sort_order=-1)


class Timestamps:
    """``created_at`` and ``updated_at``, the table's last columns."""

    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]
