"""Who may do what in notifications: the one table the services consult and tests enumerate.

Everything else (own notifications, own preferences, own streams) is "self": a user only
ever sees rows addressed to them, so there is nothing to grant.
"""

from __future__ import annotations

from enum import StrEnum

from pantherahive.domains.identity.api import AuthContext, Role


class NotificationAction(StrEnum):
    LIST_DELIVERIES = "notification.list_deliveries"
    MANAGE_WEBHOOKS = "webhook.manage"


PERMISSIONS: dict[NotificationAction, frozenset[Role]] = {
    NotificationAction.LIST_DELIVERIES: frozenset({Role.ADMIN}),
    NotificationAction.MANAGE_WEBHOOKS: frozenset({Role.ADMIN}),
}


def may(auth: AuthContext, action: NotificationAction) -> bool:
    return auth.role in PERMISSIONS[action]
