"""What every notifications route takes: the request's session, a page size, and ids in
paths named as API.md names them."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.pagination import MAX_LIMIT
from pantherahive.infra.http.paths import uuid_path
from pantherahive.infra.http.unit_of_work import request_session

Session = Annotated[AsyncSession, Depends(request_session)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
NotificationId = Annotated[UUID, uuid_path("id", "The notification.")]
WebhookId = Annotated[UUID, uuid_path("id", "The webhook subscription.")]
DeliveryId = Annotated[UUID, uuid_path("deliveryId", "The delivery.")]
