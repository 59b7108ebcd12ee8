"""The inbox's SQL: notifications, preferences, stream tickets. Every query runs under the
transaction's tenant (RLS)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.notifications.inbox.announce import CHANNEL as REALTIME_CHANNEL
from pantherahive.domains.notifications.tables import (
    Delivery,
    Notification,
    Preferences,
)


class StoredPreferences(NamedTuple):
    phone: str | None
    channels: dict[str, dict[str, bool]]


class NewNotification(NamedTuple):
    id: UUID
    event_id: UUID | None
    user_id: UUID
    type: str
    in_app: bool
    document: str  # JSON text
    message: str  # JSON text of the real-time message; its "seq" is filled in by the insert


class NewDelivery(NamedTuple):
    id: UUID
    notification_id: UUID
    channel: str
    template: str
    recipient: str
    payload: str  # JSON text



_LOCK_AND_PREFERENCES = text("""
SELECT u.user_id, l.locked, p.user_id IS NOT NULL AS present, p.phone, p.channels
  FROM unnest(CAST(:users AS uuid[])) WITH ORDINALITY AS u(user_id, n)
 CROSS JOIN LATERAL (
       SELECT pg_advisory_xact_lock(hashtextextended(:tenant_text || u.user_id::text, 7))
              IS NOT NULL AS locked) AS l
  LEFT JOIN notifications.preferences p ON p.tenant_id = :tenant AND p.user_id = u.user_id
 ORDER BY u.n
""")

# The notifications, the deliveries of the new ones, and their announcement, in one
# statement (the deliveries' foreign key is checked at its end, when both exist).
_CREATE = text("""
WITH d AS (
  SELECT * FROM unnest(CAST(:id AS uuid[]), CAST(:event_id AS uuid[]),
                       CAST(:user_id AS uuid[]), CAST(:type AS text[]),
                       CAST(:in_app AS boolean[]), CAST(:document AS text[]),
                       CAST(:message AS text[]))
           WITH ORDINALITY AS d(id, event_id, user_id, type, in_app, document, message, n)
), n AS (
  INSERT INTO notifications.notifications
         (id, tenant_id, user_id, event_id, type, in_app, document, created_at)
  SELECT d.id, CAST(:tenant AS uuid), d.user_id, d.event_id, d.type, d.in_app,
         CAST(d.document AS jsonb), CAST(:at AS timestamptz)
    FROM d ORDER BY d.n
  ON CONFLICT ON CONSTRAINT uq_notifications_event DO NOTHING
  RETURNING id, seq
), x AS (
  INSERT INTO notifications.deliveries
         (id, tenant_id, notification_id, channel, template_name, recipient, status, attempts,
          payload, next_attempt_at, created_at)
  SELECT e.id, CAST(:tenant AS uuid), e.notification_id, e.channel, e.template, e.recipient,
         'pending', 0, CAST(e.payload AS jsonb), CAST(:at AS timestamptz),
         CAST(:at AS timestamptz)
    FROM unnest(CAST(:d_id AS uuid[]), CAST(:d_notification_id AS uuid[]),
                CAST(:d_channel AS text[]), CAST(:d_template AS text[]),
                CAST(:d_recipient AS text[]), CAST(:d_payload AS text[]))
         AS e(id, notification_id, channel, template, recipient, payload)
    JOIN n ON n.id = e.notification_id
)
SELECT n.id, n.seq,
       CASE WHEN d.in_app AND CAST(:notify AS boolean) THEN
         pg_notify(:channel, jsonb_set(CAST(d.message AS jsonb), '{seq}', to_jsonb(n.seq))::text)
       END AS notified
  FROM n JOIN d ON d.id = n.id
 ORDER BY d.n
""")



def _columns(fields: tuple[str, ...], rows: Sequence[tuple[Any, ...]], *,
             prefix: str = "") -> dict[str, list[Any]]:
    """One array parameter per field (``:<prefix><field>``), for ``unnest``: the insert's
    parameters follow the row type's fields instead of being listed by hand."""
    return {prefix + name: [row[i] for row in rows] for i, name in enumerate(fields)}


class InboxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_and_preferences(self, tenant_id: UUID,
                                   user_ids: list[UUID]) -> dict[UUID, StoredPreferences]:
        """Take each user's stream lock (sorted, so two writers cannot deadlock on it) and
        read their stored preferences: one round trip.

        The lock, held until the transaction ends, makes a user's notifications commit in
        the order of their ``seq``: a second writer for the same user waits, then draws a
        higher one. SSE resume (``seq > Last-Event-ID``) relies on that."""
        rows = await self.session.execute(_LOCK_AND_PREFERENCES, {
            "tenant": tenant_id, "tenant_text": str(tenant_id), "users": sorted(user_ids)})
        return {row.user_id: StoredPreferences(row.phone, row.channels or {})
                for row in rows if row.present}

    async def create_notifications(
        self, tenant_id: UUID, at: datetime,
        notifications: list[NewNotification], deliveries: list[NewDelivery], *,
        pg_notify: bool,
    ) -> dict[UUID, int]:
        """Insert the notifications (once per event, user and type), the deliveries of those
        that were new, and — with ``pg_notify`` — announce the in-app ones with their
        ``seq``: one statement. Returns ``{id: seq}`` of the new notifications."""
        rows = await self.session.execute(_CREATE, {
            "tenant": tenant_id, "at": at, "notify": pg_notify, "channel": REALTIME_CHANNEL,
            **_columns(NewNotification._fields, notifications),
            **_columns(NewDelivery._fields, deliveries, prefix="d_"),
        })
        return {row.id: row.seq for row in rows}

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

    async def preferences(self, user_ids: set[UUID]) -> dict[UUID, StoredPreferences]:
        if not user_ids:
            return {}
        stmt = select(Preferences.user_id, Preferences.phone, Preferences.channels).where(
            Preferences.user_id.in_(user_ids))
        return {row.user_id: StoredPreferences(row.phone, row.channels or {})
                for row in await self.session.execute(stmt)}

    async def save_preferences(self, values: dict[str, Any]) -> None:
        stmt = insert(Preferences).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[Preferences.tenant_id, Preferences.user_id],
            set_={"phone": stmt.excluded.phone, "channels": stmt.excluded.channels,
                  "updated_at": stmt.excluded.updated_at},
        )
        await self.session.execute(stmt)

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

