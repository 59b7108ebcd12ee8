"""Request and response bodies of notifications and webhooks (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import AnyHttpUrl, Field, JsonValue, StrictBool

from pantherahive.core.schemas import ApiModel, RequestModel
from pantherahive.domains.notifications.catalog import TYPES


class NotificationRead(ApiModel):
    id: UUID
    type: str
    title: str
    body: str
    data: dict[str, Any]
    read_at: datetime | None
    created_at: datetime


class UnreadCount(ApiModel):
    count: int


class StreamTicketRead(ApiModel):
    ticket: str
    expires_in: int = Field(description="Seconds the ticket stays valid; it works once.")


class ChannelPreferences(ApiModel):
    in_app: bool
    email: bool
    sms: bool
    locked: bool = Field(
        description="Account-security type: in-app and email cannot be switched off."
    )


class PreferencesRead(ApiModel):
    phone: str | None = Field(description="E.164 number SMS notifications go to.")
    types: dict[str, ChannelPreferences]


class ChannelPreferencesUpdate(RequestModel):
    # strict: "true", 1 or "on" are not booleans in the document, so not here either
    in_app: StrictBool | None = None
    email: StrictBool | None = None
    sms: StrictBool | None = None


class PreferencesUpdate(RequestModel):
    """Partial: only the types and channels sent change. ``phone`` null removes it."""

    phone: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$")
    types: dict[str, ChannelPreferencesUpdate] = Field(
        default_factory=dict,
        description="Keyed by notification type; another key is 422.",
        json_schema_extra={"propertyNames": {"enum": list[JsonValue](sorted(TYPES))}},
    )


class DeliveryRead(ApiModel):
    id: UUID
    notification_id: UUID
    channel: Literal["email", "sms", "push", "webhook"]
    template_name: str
    recipient: str
    status: Literal["pending", "sent", "failed"]
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


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
