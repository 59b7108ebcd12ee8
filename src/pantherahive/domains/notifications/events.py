"""The events notifications publishes: one per change a user or an ADMIN makes through
its API (so each of those requests leaves exactly one audit event). It publishes nothing
about the notifications it creates from other services' events: those are effects of
events already recorded.

The event types it consumes are listed in ``handlers.CONSUMERS``; webhooks relay every
event type a subscription names.
"""

from __future__ import annotations

NOTIFICATION_READ = "notification.read"
NOTIFICATIONS_ALL_READ = "notification.all_read"
PREFERENCES_UPDATED = "notification.preferences_updated"
STREAM_TICKET_ISSUED = "notification.stream_ticket_issued"
WEBHOOK_CREATED = "webhook.created"
WEBHOOK_UPDATED = "webhook.updated"
WEBHOOK_DELETED = "webhook.deleted"
WEBHOOK_SECRET_ROTATED = "webhook.secret_rotated"
WEBHOOK_REDELIVERY_REQUESTED = "webhook.redelivery_requested"
AUTHZ_DENIED = "authz.denied"

PUBLISHED: tuple[str, ...] = (
    NOTIFICATION_READ,
    NOTIFICATIONS_ALL_READ,
    PREFERENCES_UPDATED,
    STREAM_TICKET_ISSUED,
    WEBHOOK_CREATED,
    WEBHOOK_UPDATED,
    WEBHOOK_DELETED,
    WEBHOOK_SECRET_ROTATED,
    WEBHOOK_REDELIVERY_REQUESTED,
    AUTHZ_DENIED,
)
