"""Request and response bodies of the inbox: notifications, preferences, and the deliveries
log (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from pantherahive.core.schemas import ApiModel, RequestModel


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
    in_app: bool | None = None
    email: bool | None = None
    sms: bool | None = None


class PreferencesUpdate(RequestModel):
    """Partial: only the types and channels sent change. ``phone`` null removes it."""

    phone: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$")
    types: dict[str, ChannelPreferencesUpdate] = Field(default_factory=dict)


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
