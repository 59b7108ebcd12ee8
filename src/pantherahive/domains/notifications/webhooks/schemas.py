"""Request and response bodies of webhooks (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import AnyHttpUrl, Field

from pantherahive.core.schemas import ApiModel, RequestModel


class WebhookCreate(RequestModel):
    url: AnyHttpUrl
    events: list[str] = Field(min_length=1, max_length=100)
    secret: str | None = Field(default=None, min_length=16, max_length=200)


class WebhookUpdate(RequestModel):
    url: AnyHttpUrl | None = None
    events: list[str] | None = Field(default=None, min_length=1, max_length=100)
    enabled: bool | None = None


class WebhookRead(ApiModel):
    id: UUID
    url: str
    events: list[str]
    enabled: bool
    consecutive_failures: int
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class WebhookWithSecret(WebhookRead):
    secret: str = Field(description="Shown once: store it now, it is never returned again.")


class WebhookSecret(ApiModel):
    secret: str
    previous_secret_expires_at: datetime | None


class WebhookDeliveryRead(ApiModel):
    id: UUID
    webhook_id: UUID
    event_id: UUID
    event_type: str
    status: Literal["pending", "sent", "failed"]
    attempts: int
    response_status: int | None
    duration_ms: int | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    redelivery_of: UUID | None
