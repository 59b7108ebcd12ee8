"""The events notifications publishes: one per change a user or an ADMIN makes through
its API (so each of those requests leaves exactly one audit event). It publishes nothing
about the notifications it creates from other services' events: those are effects of
events already recorded. Its refusals are ``authz.denied``, declared with the security kit
(``infra.security.authz``).

What it consumes is declared in ``handlers.py`` (by schema); webhooks relay every event
type a subscription names.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pantherahive.core.events import EventData


class NotificationMarkedRead(EventData, type="notification.read", subject="notification"):
    """One of the caller's notifications was marked read."""


class AllNotificationsRead(EventData, type="notification.all_read", subject="user"):
    """Every notification of the user (the subject) was marked read."""


class PreferencesUpdated(EventData, type="notification.preferences_updated", subject="user"):
    """``changes``: ``{"channels": [old, new], "phone": [old, new]}``, what changed only."""

    changes: dict[str, list[Any]]


class StreamTicketIssued(EventData, type="notification.stream_ticket_issued", subject="user"):
    """A stream credential was issued (audited like a login; the ticket itself never is)."""

    expires_in: int


class WebhookCreated(EventData, type="webhook.created", subject="webhook"):
    url: str
    events: list[str]
    enabled: bool


class WebhookUpdated(EventData, type="webhook.updated", subject="webhook"):
    """``changes``: ``{field: [old, new]}`` of ``url``, ``events``, ``enabled``."""

    changes: dict[str, list[Any]]


class WebhookDeleted(EventData, type="webhook.deleted", subject="webhook"):
    url: str


class WebhookSecretRotated(EventData, type="webhook.secret_rotated", subject="webhook"):
    previous_secret_expires_at: str


class WebhookRedeliveryRequested(
    EventData, type="webhook.redelivery_requested", subject="webhook"
):
    delivery_id: UUID
    redelivery_of: UUID
    event_id: UUID
    event_type: str
