"""Request and response bodies of the inbox: notifications, preferences, and the deliveries
log (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import Field, JsonValue, StrictBool

from pantherahive.core.schemas import ApiModel, RequestModel
from pantherahive.domains.notifications.catalog import TYPES


class NotificationRead(ApiModel):
    """A notification as the API lists it and the streams push it: the one declaration of
    its shape. The row keeps ``DOCUMENT`` of these fields in its JSONB ``document``; the
    others are columns."""

    DOCUMENT: ClassVar[tuple[str, ...]] = ("type", "title", "body", "data")

    id: UUID
    type: str
    title: str = ""
    body: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    read_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, *, id: UUID, document: dict[str, Any], read_at: datetime | None,
           created_at: datetime) -> NotificationRead:
        """From a stored row's columns and document."""
        content = {key: document[key] for key in cls.DOCUMENT if key in document}
        return cls(id=id, read_at=read_at, created_at=created_at, **content)

    def wire(self) -> dict[str, Any]:
        """The JSON form (camelCase), as the API and the streams send it."""
        return self.model_dump(mode="json", by_alias=True)


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
