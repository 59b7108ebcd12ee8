"""Webhooks' SQL: subscriptions and their delivery log, under the transaction's tenant (RLS)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.notifications.tables import Webhook, WebhookDelivery

_ENQUEUE_WEBHOOKS = text("""
INSERT INTO notifications.webhook_deliveries
       (id, tenant_id, webhook_id, event_id, event_type, payload, status, attempts,
        next_attempt_at, created_at)
SELECT gen_random_uuid(), w.tenant_id, w.id, e.id, e.type, CAST(e.payload AS jsonb), 'pending',
       0, CAST(:at AS timestamptz), CAST(:at AS timestamptz)
  FROM unnest(CAST(:ids AS uuid[]), CAST(:types AS text[]),
              CAST(:occurred AS timestamptz[]), CAST(:payloads AS text[]))
       WITH ORDINALITY AS e(id, type, occurred_at, payload, n)
  JOIN notifications.webhooks w
    ON w.tenant_id = :tenant AND w.enabled AND w.events && ARRAY[e.type, '*']
   AND w.created_at <= e.occurred_at
 ORDER BY e.n, w.id
ON CONFLICT (webhook_id, event_id) WHERE redelivery_of IS NULL DO NOTHING
""")


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: Any) -> None:
        self.session.add(row)
        await self.session.flush()

    async def list_webhooks(self, *, after: tuple[datetime, UUID] | None,
                            limit: int) -> list[Webhook]:
        stmt = select(Webhook)
        if after is not None:
            stmt = stmt.where(tuple_(Webhook.created_at, Webhook.id) > after)
        stmt = stmt.order_by(Webhook.created_at, Webhook.id).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def get_webhook(self, webhook_id: UUID, *, for_update: bool = False) -> Webhook | None:
        stmt = select(Webhook).where(Webhook.id == webhook_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def enqueue_webhook_deliveries(self, tenant_id: UUID, events: list[Any],
                                         at: datetime) -> None:
        """For each event (``WebhookEvent``s), one pending delivery per enabled subscription
        naming its type (or ``*``) that existed when it happened: one statement."""
        await self.session.execute(_ENQUEUE_WEBHOOKS, {
            "tenant": tenant_id, "at": at, "ids": [e.id for e in events],
            "types": [e.type for e in events], "occurred": [e.occurred_at for e in events],
            "payloads": [e.envelope for e in events]})

    async def webhook_deliveries(
        self, webhook_id: UUID, *, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[WebhookDelivery]:
        stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
        if after is not None:
            stmt = stmt.where(tuple_(WebhookDelivery.created_at, WebhookDelivery.id) < after)
        stmt = stmt.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        return list((await self.session.execute(stmt.limit(limit))).scalars())

    async def webhook_delivery(self, delivery_id: UUID, *,
                               for_update: bool = False) -> WebhookDelivery | None:
        stmt = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()
