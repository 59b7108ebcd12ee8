"""All of notifications' SQL. Every query runs under the transaction's tenant (RLS); the
two claim functions are the only doors that see several tenants (migration 0006)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.notifications.tables import (
    Delivery,
    Notification,
    Preferences,
    StreamTicket,
    TaskView,
    Webhook,
    WebhookDelivery,
)

_CLAIMS = {
    name: text(f"SELECT tenant_id, id FROM notifications.{name}(:c, :l, :s)")
    for name in ("claim_deliveries", "claim_webhook_deliveries")
}


class NotificationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # notifications
    async def insert_notification(self, values: dict[str, Any]) -> Notification | None:
        """Insert unless this event already notified this user of this type (None then)."""
        stmt = (
            insert(Notification)
            .values(**values)
            .on_conflict_do_nothing(constraint="uq_notifications_event")
            .returning(Notification)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list_for_user(
        self, user_id: UUID, *, unread: bool, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[Notification]:
        stmt = select(Notification).where(Notification.user_id == user_id, Notification.in_app)
        if unread:
            stmt = stmt.where(Notification.read_at.is_(None))
        if after is not None:
            stmt = stmt.where(tuple_(Notification.created_at, Notification.id) < after)
        stmt = stmt.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def since(self, user_id: UUID, seq: int, limit: int) -> list[Notification]:
        stmt = (
            select(Notification)
            .where(Notification.user_id == user_id, Notification.in_app, Notification.seq > seq)
            .order_by(Notification.seq)
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def get_notification(self, notification_id: UUID) -> Notification | None:
        return await self.session.get(Notification, notification_id)

    async def unread_count(self, user_id: UUID) -> int:
        stmt = select(func.count()).where(
            Notification.user_id == user_id, Notification.in_app, Notification.read_at.is_(None)
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def mark_read(self, user_id: UUID, notification_id: UUID, at: datetime) -> bool:
        """True when the notification exists and belongs to the user (read or not)."""
        stmt = (
            update(Notification)
            .where(Notification.id == notification_id, Notification.user_id == user_id,
                   Notification.in_app)
            .values(read_at=func.coalesce(Notification.read_at, at))
            .returning(Notification.id)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def mark_all_read(self, user_id: UUID, at: datetime) -> None:
        await self.session.execute(
            update(Notification)
            .where(Notification.user_id == user_id, Notification.read_at.is_(None))
            .values(read_at=at)
        )

    # preferences
    async def preferences(self, user_ids: set[UUID]) -> dict[UUID, Preferences]:
        if not user_ids:
            return {}
        stmt = select(Preferences).where(Preferences.user_id.in_(user_ids))
        return {row.user_id: row for row in (await self.session.execute(stmt)).scalars()}

    async def save_preferences(self, values: dict[str, Any]) -> None:
        stmt = insert(Preferences).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[Preferences.tenant_id, Preferences.user_id],
            set_={"phone": stmt.excluded.phone, "channels": stmt.excluded.channels,
                  "updated_at": stmt.excluded.updated_at},
        )
        await self.session.execute(stmt)

    # deliveries
    async def add(self, row: Any) -> None:
        self.session.add(row)
        await self.session.flush()

    async def list_deliveries(
        self, *, after: tuple[datetime, UUID] | None, limit: int, status: str | None
    ) -> list[Delivery]:
        stmt = select(Delivery)
        if status is not None:
            stmt = stmt.where(Delivery.status == status)
        if after is not None:
            stmt = stmt.where(tuple_(Delivery.created_at, Delivery.id) < after)
        stmt = stmt.order_by(Delivery.created_at.desc(), Delivery.id.desc()).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def deliveries_of(self, notification_id: UUID) -> list[Delivery]:
        stmt = select(Delivery).where(Delivery.notification_id == notification_id)
        return list((await self.session.execute(stmt)).scalars())

    async def claim(
        self,
        function: Literal["claim_deliveries", "claim_webhook_deliveries"],
        channels: list[str],
        limit: int,
        lease_seconds: int,
    ) -> list[tuple[UUID, UUID]]:
        rows = await self.session.execute(
            _CLAIMS[function], {"c": channels, "l": limit, "s": lease_seconds}
        )
        return [(row.tenant_id, row.id) for row in rows]

    async def delivery_for_update(self, delivery_id: UUID) -> Delivery | None:
        stmt = select(Delivery).where(Delivery.id == delivery_id).with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    # stream tickets
    async def consume_ticket(self, ticket_hash: bytes, at: datetime) -> UUID | None:
        stmt = (
            update(StreamTicket)
            .where(StreamTicket.ticket_hash == ticket_hash, StreamTicket.used_at.is_(None),
                   StreamTicket.expires_at > at)
            .values(used_at=at)
            .returning(StreamTicket.user_id)
        )
        value: UUID | None = (await self.session.execute(stmt)).scalar_one_or_none()
        return value

    # task read model
    async def upsert_task_view(self, values: dict[str, Any]) -> TaskView:
        stmt = insert(TaskView).values(**values)
        updates = {k: stmt.excluded[k] for k in values if k not in ("tenant_id", "task_id")}
        upsert = stmt.on_conflict_do_update(
            index_elements=[TaskView.tenant_id, TaskView.task_id], set_=updates
        ).returning(TaskView).execution_options(populate_existing=True)
        row: TaskView = (await self.session.execute(upsert)).scalar_one()
        return row

    async def get_task_view(self, tenant_id: UUID, task_id: UUID) -> TaskView | None:
        stmt = select(TaskView).where(TaskView.tenant_id == tenant_id, TaskView.task_id == task_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def delete_task_view(self, tenant_id: UUID, task_id: UUID) -> None:
        view = await self.get_task_view(tenant_id, task_id)
        if view is not None:
            await self.session.delete(view)

    async def dependents_of(self, task_id: UUID) -> list[TaskView]:
        stmt = select(TaskView).where(TaskView.depends_on.contains([task_id]))
        return list((await self.session.execute(stmt)).scalars())

    async def statuses(self, task_ids: list[UUID]) -> dict[UUID, str]:
        if not task_ids:
            return {}
        stmt = select(TaskView.task_id, TaskView.status).where(TaskView.task_id.in_(task_ids))
        return {row.task_id: row.status for row in await self.session.execute(stmt)}

    # webhooks
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

    async def subscribed_webhooks(self, event_type: str) -> list[Webhook]:
        stmt = select(Webhook).where(
            Webhook.enabled.is_(True),
            Webhook.events.overlap([event_type, "*"]),
        )
        return list((await self.session.execute(stmt)).scalars())

    async def insert_webhook_delivery(self, values: dict[str, Any]) -> None:
        stmt = insert(WebhookDelivery).values(**values).on_conflict_do_nothing(
            index_elements=[WebhookDelivery.webhook_id, WebhookDelivery.event_id],
            index_where=WebhookDelivery.redelivery_of.is_(None),
        )
        await self.session.execute(stmt)

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
