"""Audit's tables (schema ``audit``); the DDL itself, triggers included, lives in the
migrations."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Computed, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from pantherahive.infra.db.base import Base, CreatedAt, TenantRow, Timestamp, Uuid

SCHEMA = {"schema": "audit"}


class Chain(Base):
    """The head of one tenant's chain, locked by every append."""

    __tablename__ = "chains"
    __table_args__ = SCHEMA

    tenant_id: Mapped[Uuid] = mapped_column(primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))


class _EventRecord:
    """What an audit event records, from ``occurred_at`` to ``prev_hash``: the live chain's
    events and the archived ones brought back share it (and its place in the columns)."""

    occurred_at: Mapped[Timestamp]
    actor_id: Mapped[Uuid | None]
    actor_type: Mapped[str] = mapped_column(String(10))
    action: Mapped[str] = mapped_column(String(100))
    resource_type: Mapped[str] = mapped_column(String(50))
    resource_id: Mapped[str] = mapped_column(String(100))
    request_id: Mapped[str | None] = mapped_column(String(128))
    ip: Mapped[str | None] = mapped_column(Text)
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    hash: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))


class AuditEvent(TenantRow, _EventRecord, Base):
    __tablename__ = "audit_events"
    __table_args__ = SCHEMA

    seq: Mapped[int] = mapped_column(BigInteger)
    # After the event's columns.
    recorded_at: Mapped[CreatedAt] = mapped_column(sort_order=1)
    search: Mapped[Any] = mapped_column(TSVECTOR, Computed("search"), deferred=True, sort_order=1)


class ArchiveSegment(TenantRow, Base):
    """The manifest of one archived segment, mirrored from object storage."""

    __tablename__ = "archive_segments"
    __table_args__ = SCHEMA

    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    first_prev_hash: Mapped[str] = mapped_column(String(64))
    first_hash: Mapped[str] = mapped_column(String(64))
    last_hash: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer)
    first_occurred_at: Mapped[Timestamp]
    last_occurred_at: Mapped[Timestamp]
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(Text)
    manifest_path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[CreatedAt]


class RestoredEvent(_EventRecord, Base):
    """An archived event brought back for an investigation (outside the live chain)."""

    __tablename__ = "restored_events"
    __table_args__ = SCHEMA

    tenant_id: Mapped[Uuid] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[Uuid]
    # After the event's columns.
    segment_id: Mapped[Uuid] = mapped_column(sort_order=1)
    restored_at: Mapped[CreatedAt] = mapped_column(sort_order=1)
