"""Notifications' domain errors (each maps to a status through core.errors)."""

from __future__ import annotations

from pantherahive.core.errors import FieldError, NotFound, ValidationFailed


class NotificationNotFound(NotFound):
    pass


class WebhookNotFound(NotFound):
    pass


class LockedPreference(ValidationFailed):
    pass


class UnsafeWebhookUrl(ValidationFailed):
    def __init__(self, reason: str) -> None:
        super().__init__(f"The webhook URL is refused: {reason}.",
                         errors=[FieldError("url", reason)])
