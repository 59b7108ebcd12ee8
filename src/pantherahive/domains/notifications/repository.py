"""All of notifications' SQL. Every query runs under the transaction's tenant (RLS); the
two claim functions are the only doors that see several tenants (migration 0006)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, NamedTuple
from uuid import UUID

from sqlalchemy import delete, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.notifications.realtime import CHANNEL as REALTIME_CHANNEL
from pantherahive.domains.notifications.tables import (
    Delivery,
    Notification,
    Preferences,
    StreamTicket,
    Webhook,
    WebhookDelivery,
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
  SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:events AS uuid[]), CAST(:users AS uuid[]),
                       CAST(:types AS text[]), CAST(:in_app AS boolean[]),
                       CAST(:docs AS text[]), CAST(:messages AS text[]))
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
    FROM unnest(CAST(:d_ids AS uuid[]), CAST(:d_notifications AS uuid[]),
                CAST(:d_channels AS text[]), CAST(:d_templates AS text[]),
                CAST(:d_recipients AS text[]), CAST(:d_payloads AS text[]))
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

class TaskViewRow(NamedTuple):
    task_id: UUID
    project_id: UUID | None
    title: str
    status: str
    assignee_id: UUID | None
    reporter_id: UUID | None
    depends_on: list[UUID]


_TASK_COLUMNS = "task_id, project_id, title, status, assignee_id, reporter_id, depends_on"
_TASK_INSERT = (
    "INSERT INTO notifications.task_views AS t (tenant_id, task_id, project_id, title, status, "
    "assignee_id, reporter_id, depends_on) VALUES (CAST(:tenant AS uuid), CAST(:task AS uuid), "
    "CAST(:project AS uuid), CAST(:title AS text), CAST(:status AS text), "
    "CAST(:assignee AS uuid), CAST(:reporter AS uuid), CAST(:depends_on AS uuid[])) "
    "ON CONFLICT (tenant_id, task_id) DO UPDATE SET "
    "project_id = COALESCE(EXCLUDED.project_id, t.project_id), "
)
# What each task event sets (assembled from constants only).
_TASK_UPSERTS = {
    change: text(_TASK_INSERT + sets + " RETURNING " + _TASK_COLUMNS)
    for change, sets in {
        "created": "title = EXCLUDED.title, status = EXCLUDED.status, "
                   "assignee_id = EXCLUDED.assignee_id, reporter_id = EXCLUDED.reporter_id, "
                   "depends_on = EXCLUDED.depends_on",
        "title": "title = EXCLUDED.title",
        "assignee": "assignee_id = EXCLUDED.assignee_id",
        "status": "status = EXCLUDED.status",
        "touch": "title = t.title",
        "dependency_added": "depends_on = CASE WHEN CAST(:dep AS uuid) = ANY(t.depends_on) "
                            "THEN t.depends_on ELSE t.depends_on || CAST(:dep AS uuid) END",
        "dependency_removed": "depends_on = array_remove(t.depends_on, CAST(:dep AS uuid))",
    }.items()
}
_DELETE_TASK = text("""
WITH gone AS (
  DELETE FROM notifications.task_views
   WHERE tenant_id = :tenant AND task_id = :task RETURNING status
), cut AS (
  UPDATE notifications.task_views SET depends_on = array_remove(depends_on, :task)
   WHERE tenant_id = :tenant AND depends_on @> ARRAY[CAST(:task AS uuid)] RETURNING task_id
)
SELECT (SELECT status FROM gone) AS status, ARRAY(SELECT task_id FROM cut) AS dependents
""")
_NO_OPEN_DEPENDENCY = """
   AND NOT EXISTS (
       SELECT 1 FROM notifications.task_views o
        WHERE o.tenant_id = d.tenant_id AND o.task_id = ANY(d.depends_on)
          AND o.status NOT IN ('DONE', 'CANCELLED'))
 ORDER BY d.task_id"""
_UNBLOCKED_AMONG = text(
    f"SELECT {_TASK_COLUMNS} FROM notifications.task_views d "
    "WHERE d.tenant_id = :tenant AND d.task_id = ANY(CAST(:tasks AS uuid[]))"
    + _NO_OPEN_DEPENDENCY
)
_UNBLOCKED_BY = text(
    f"SELECT {_TASK_COLUMNS} FROM notifications.task_views d "
    "WHERE d.tenant_id = :tenant AND d.depends_on @> ARRAY[CAST(:task AS uuid)]"
    + _NO_OPEN_DEPENDENCY
)
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
_PURGE_TICKETS = text("SELECT notifications.purge_stream_tickets(:limit)")
_CLAIMS = {
    name: text(f"SELECT tenant_id, id FROM notifications.{name}(:c, :l, :s)")
    for name in ("claim_deliveries", "claim_webhook_deliveries")
}
# The same door for one tenant (the transaction's, under RLS): what the claim functions of
# migration 0006 do, restricted to the rows a tenant-scoped worker may send.
_TENANT_CLAIMS = {
    name: text(
        f"UPDATE notifications.{table} d"
        " SET next_attempt_at = now() + make_interval(secs => :s)"
        f" WHERE d.id IN (SELECT x.id FROM notifications.{table} x"
        " WHERE x.tenant_id = :tenant AND x.status = 'pending' AND x.next_attempt_at <= now()"
        f"{extra} ORDER BY x.next_attempt_at LIMIT :l FOR UPDATE SKIP LOCKED)"
        " RETURNING d.tenant_id, d.id")
    for name, table, extra in (
        ("claim_deliveries", "deliveries", " AND x.channel = ANY(CAST(:c AS text[]))"),
        ("claim_webhook_deliveries", "webhook_deliveries", ""),
    )
}


class NotificationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # notifications
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
            "tenant": tenant_id, "at": at, "notify": pg_notify,
            "events": [n.event_id for n in notifications],
            "channel": REALTIME_CHANNEL,
            "ids": [n.id for n in notifications], "users": [n.user_id for n in notifications],
            "types": [n.type for n in notifications], "in_app": [n.in_app for n in notifications],
            "docs": [n.document for n in notifications],
            "messages": [n.message for n in notifications],
            "d_ids": [d.id for d in deliveries],
            "d_notifications": [d.notification_id for d in deliveries],
            "d_channels": [d.channel for d in deliveries],
            "d_templates": [d.template for d in deliveries],
            "d_recipients": [d.recipient for d in deliveries],
            "d_payloads": [d.payload for d in deliveries],
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

    # preferences
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
        *,
        tenant_id: UUID | None = None,
    ) -> list[tuple[UUID, UUID]]:
        """Lease due work: of every tenant, or — with ``tenant_id`` (the session's tenant)
        — of that tenant only."""
        params: dict[str, Any] = {"c": channels, "l": limit, "s": lease_seconds}
        if tenant_id is None:
            rows = await self.session.execute(_CLAIMS[function], params)
        else:
            rows = await self.session.execute(_TENANT_CLAIMS[function],
                                              {**params, "tenant": tenant_id})
        return [(row.tenant_id, row.id) for row in rows]

    async def delivery_for_update(self, delivery_id: UUID) -> Delivery | None:
        stmt = select(Delivery).where(Delivery.id == delivery_id).with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    # stream tickets
    async def consume_ticket(self, ticket_hash: bytes,
                             at: datetime) -> tuple[UUID, int, datetime] | None:
        """Delete an unexpired ticket: (user, token version, token expiry), else None."""
        stmt = (
            delete(StreamTicket)
            .where(StreamTicket.ticket_hash == ticket_hash, StreamTicket.used_at.is_(None),
                   StreamTicket.expires_at > at)
            .returning(StreamTicket.user_id, StreamTicket.token_version,
                       StreamTicket.token_expires_at)
        )
        row = (await self.session.execute(stmt)).first()
        return None if row is None else (row.user_id, row.token_version, row.token_expires_at)

    async def purge_tickets(self, *, limit: int) -> int:
        """Delete expired (and legacy used) tickets of every tenant, at most ``limit``."""
        return int(await self.session.scalar(_PURGE_TICKETS, {"limit": limit}) or 0)

    # task read model
    async def apply_task_change(self, tenant_id: UUID, task_id: UUID, change: str,
                                values: dict[str, Any]) -> TaskViewRow:
        """Create or change a task's read-model row in one statement; ``change`` names the
        columns an event sets (``_TASK_UPSERTS``)."""
        row = (await self.session.execute(_TASK_UPSERTS[change], {
            "tenant": tenant_id, "task": task_id, "project": None, "title": "",
            "status": "TODO", "assignee": None, "reporter": None, "depends_on": [],
            "dep": None, **values})).one()
        return TaskViewRow(*row)

    async def delete_task_view(self, tenant_id: UUID,
                               task_id: UUID) -> tuple[str | None, list[UUID]]:
        """Remove a task and every dependency on it: (its last status — None when the read
        model never saw it —, the tasks that depended on it)."""
        row = (await self.session.execute(_DELETE_TASK, {"tenant": tenant_id,
                                                         "task": task_id})).one()
        return (None if row.status is None else str(row.status)), list(row.dependents)

    async def unblocked_among(self, tenant_id: UUID, task_ids: list[UUID]) -> list[TaskViewRow]:
        """Those of ``task_ids`` with no open dependency left. A dependency missing from the
        read model was deleted, which tasks too treats as not blocking."""
        if not task_ids:
            return []
        rows = await self.session.execute(_UNBLOCKED_AMONG, {"tenant": tenant_id,
                                                             "tasks": task_ids})
        return [TaskViewRow(*row) for row in rows]

    async def unblocked_by(self, tenant_id: UUID, task_id: UUID) -> list[TaskViewRow]:
        """Tasks depending on ``task_id`` with no open dependency left (``task_id`` closed)."""
        rows = await self.session.execute(_UNBLOCKED_BY, {"tenant": tenant_id, "task": task_id})
        return [TaskViewRow(*row) for row in rows]

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
