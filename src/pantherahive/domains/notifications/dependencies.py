"""The ids in notifications' paths, named as API.md names them. (The request's session and
the list parameters are the shared ones in ``infra.http``.)"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pantherahive.infra.http.paths import uuid_path

NotificationId = Annotated[UUID, uuid_path("id", "The notification.")]
WebhookId = Annotated[UUID, uuid_path("id", "The webhook subscription.")]
DeliveryId = Annotated[UUID, uuid_path("deliveryId", "The delivery.")]
