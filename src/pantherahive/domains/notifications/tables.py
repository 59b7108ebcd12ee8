"""Notifications' tables (schema ``notifications``); the DDL lives in migration 0006."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, Boolean, Identity, Integer, LargeBinary, String, Text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.orm import Mapped, mapped_column

from pantherahive.infra.db.base import Base, TenantRow, Timestamp, Uuid

SCHEMA = {"schema": "notifications"}


class Notification(Base):
    """One notification for one user; ``document`` is the JSONB {type, title, body, data}."""

    __tablename__ = "notifications"
    __table_args__ = SCHEMA

    id: Mapped[Uuid] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True))
    tenant_id: Mapped[Uuid]
    user_id: Mapped[Uuid]
    event_id: Mapped[Uuid | None]
    type: Mapped[str] = mapped_column(String(50))
    document: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # False when the user switched the in-app channel off: kept as the deliveries' document,
    # never listed, counted or streamed.
    in_app: Mapped[bool] = mapped_column(Boolean)
    read_at: Mapped[Timestamp | None]
    created_at: Mapped[Timestamp]


class Preferences(Base):
    __tablename__ = "preferences"
    __table_args__ = SCHEMA

    tenant_id: Mapped[Uuid] = mapped_column(primary_key=True)
    user_id: Mapped[Uuid] = mapped_column(primary_key=True)
    phone: Mapped[str | None] = mapped_column(String(20))
    channels: Mapped[dict[str, dict[str, bool]]] = mapped_column(JSONB)
    updated_at: Mapped[Timestamp]


class Delivery(TenantRow, Base):
    """One channel delivery of one notification. ``payload`` holds the rendered message
    (which may carry a single-use token) only until the delivery is final."""

    __tablename__ = "deliveries"
    __table_args__ = SCHEMA

    notification_id: Mapped[Uuid]
    channel: Mapped[str] = mapped_column(String(10))
    template_name: Mapped[str] = mapped_column(String(80))
    recipient: Mapped[str] = mapped_column(String(254))
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    next_attempt_at: Mapped[Timestamp]
    created_at: Mapped[Timestamp]
    sent_at: Mapped[Timestamp | None]


class StreamTicket(Base):
    __tablename__ = "stream_tickets"
    __table_args__ = SCHEMA

    ticket_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    tenant_id: Mapped[Uuid]
    user_id: Mapped[Uuid]
    expires_at: Mapped[Timestamp]
    used_at: Mapped[Timestamp | None]
    # The access token that asked for the ticket: a stream opened with it ends when that
    # token would stop working (expired, or its version bumped by identity).
    token_version: Mapped[int] = mapped_column(Integer)
    token_expires_at: Mapped[Timestamp]


class TaskView(Base):
    """Read model of a task built from task.* events (who to tell when it changes)."""

    __tablename__ = "task_views"
    __table_args__ = SCHEMA

    tenant_id: Mapped[Uuid] = mapped_column(primary_key=True)
    task_id: Mapped[Uuid] = mapped_column(primary_key=True)
    project_id: Mapped[Uuid | None]
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    assignee_id: Mapped[Uuid | None]
    reporter_id: Mapped[Uuid | None]
    depends_on: Mapped[list[UUID]] = mapped_column(ARRAY(PgUUID(as_uuid=True)))


class Webhook(TenantRow, Base):
    __tablename__ = "webhooks"
    __table_args__ = SCHEMA

    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(ARRAY(Text))
    secret_enc: Mapped[str] = mapped_column(Text)
    previous_secret_enc: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[Timestamp | None]
    enabled: Mapped[bool] = mapped_column(Boolean)
    consecutive_failures: Mapped[int] = mapped_column(Integer)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]


class WebhookDelivery(TenantRow, Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = SCHEMA

    webhook_id: Mapped[Uuid]
    event_id: Mapped[Uuid]
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer)
    response_status: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[Timestamp]
    created_at: Mapped[Timestamp]
    sent_at: Mapped[Timestamp | None]
    redelivery_of: Mapped[Uuid | None]
