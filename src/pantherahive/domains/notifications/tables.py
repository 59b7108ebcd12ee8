"""Notifications' tables (schema ``notifications``); the DDL lives in migration 0006."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, Boolean, DateTime, Identity, Integer, LargeBinary, String, Text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.orm import Mapped, mapped_column

from pantherahive.infra.db.base import Base

SCHEMA = {"schema": "notifications"}


class Notification(Base):
    """One notification for one user; ``document`` is the JSONB {type, title, body, data}."""

    __tablename__ = "notifications"
    __table_args__ = SCHEMA

    id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True))
    tenant_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True))
    user_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True))
    event_id: Mapped[UUID | None] = mapped_column(PgUUID(as_uuid=True))
    type: Mapped[str] = mapped_column(String(50))
    document: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # False when the user switched the in-app channel off: kept as the deliveries' document,
    # never listed, counted or streamed.
    in_app: Mapped[bool] = mapped_column(Boolean)
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Preferences(Base):
    __tablename__ = "preferences"
    __table_args__ = SCHEMA

    tenant_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    user_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    phone: Mapped[str | None] = mapped_column(String(20))
    channels: Mapped[dict[str, dict[str, bool]]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Delivery(Base):
    """One channel delivery of one notification. ``payload`` holds the rendered message
    (which may carry a single-use token) only until the delivery is final."""

    __tablename__ = "deliveries"
    __table_args__ = SCHEMA

    id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True))
    notification_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True))
    channel: Mapped[str] = mapped_column(String(10))
    template_name: Mapped[str] = mapped_column(String(80))
    recipient: Mapped[str] = mapped_column(String(254))
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StreamTicket(Base):
    __tablename__ = "stream_tickets"
    __table_args__ = SCHEMA

    ticket_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True))
    user_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The access token that asked for the ticket: a stream opened with it ends when that
    # token would stop working (expired, or its version bumped by identity).
    token_version: Mapped[int] = mapped_column(Integer)
    token_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TaskView(Base):
    """Read model of a task built from task.* events (who to tell when it changes)."""

    __tablename__ = "task_views"
    __table_args__ = SCHEMA

    tenant_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    task_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    project_id: Mapped[UUID | None] = mapped_column(PgUUID(as_uuid=True))
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    assignee_id: Mapped[UUID | None] = mapped_column(PgUUID(as_uuid=True))
    reporter_id: Mapped[UUID | None] = mapped_column(PgUUID(as_uuid=True))
    depends_on: Mapped[list[UUID]] = mapped_column(ARRAY(PgUUID(as_uuid=True)))


class Webhook(Base):
    __tablename__ = "webhooks"
    __table_args__ = SCHEMA

    id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True))
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(ARRAY(Text))
    secret_enc: Mapped[str] = mapped_column(Text)
    previous_secret_enc: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enabled: Mapped[bool] = mapped_column(Boolean)
    consecutive_failures: Mapped[int] = mapped_column(Integer)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = SCHEMA

    id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True))
    webhook_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True))
    event_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True))
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer)
    response_status: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    redelivery_of: Mapped[UUID | None] = mapped_column(PgUUID(as_uuid=True))
