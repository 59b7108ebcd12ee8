"""The inbox: creating notifications (the document, one delivery per enabled channel, the
real-time announcement), the user's own notifications, preferences, stream tickets, and
(ADMIN) the deliveries log."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import orjson
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.clock import now
from pantherahive.core.errors import FieldError, ValidationFailed
from pantherahive.core.pagination import cut_time_id_page, decode_time_id_cursor
from pantherahive.core.schemas import Page
from pantherahive.domains.identity.api import AuthContext, active_user_emails
from pantherahive.domains.notifications import events
from pantherahive.domains.notifications.catalog import LOCKED_CHANNELS, TYPES, Channel
from pantherahive.domains.notifications.errors import LockedPreference, NotificationNotFound
from pantherahive.domains.notifications.inbox.announce import Publisher, encode
from pantherahive.domains.notifications.inbox.rendering import render_email, render_sms
from pantherahive.domains.notifications.inbox.repository import (
    InboxRepository,
    NewDelivery,
    NewNotification,
    StoredPreferences,
)
from pantherahive.domains.notifications.inbox.schemas import (
    ChannelPreferences,
    DeliveryRead,
    NotificationRead,
    PreferencesRead,
    PreferencesUpdate,
)
from pantherahive.domains.notifications.metrics import NOTIFICATIONS_CREATED
from pantherahive.domains.notifications.permissions import NotificationAction, may
from pantherahive.domains.notifications.tables import Delivery, Notification
from pantherahive.domains.notifications.webhooks.repository import WebhookRepository
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.db.engine import set_tenant
from pantherahive.infra.security.authz import deny


@dataclass(frozen=True, slots=True)
class Draft:
    """A notification to create. ``email`` overrides the user's address (account messages
    reach users who are not active yet); ``secret_context`` (a single-use token) goes into
    the rendered message only, never into the stored document."""

    user_id: UUID
    type: str
    title: str
    body: str
    data: dict[str, Any] = field(default_factory=dict)
    email: str | None = None
    secret_context: dict[str, str] = field(default_factory=dict)


def read_model(row: Notification) -> NotificationRead:
    return NotificationRead.of(id=row.id, document={**row.document, "type": row.type},
                               read_at=row.read_at, created_at=row.created_at)


def realtime_message(tenant_id: UUID, user_id: UUID, notification_id: UUID, seq: int,
                     notification: dict[str, Any]) -> dict[str, Any]:
    return {"tenantId": str(tenant_id), "userId": str(user_id), "id": str(notification_id),
            "seq": seq, "notification": notification}


def effective_channels(stored: StoredPreferences | None, type_: str) -> dict[Channel, bool]:
    spec = TYPES[type_]
    saved = (stored.channels if stored is not None else {}).get(type_, {})
    result = {ch: bool(saved.get(ch.value, spec.default(ch))) for ch in Channel}
    if spec.locked:
        for ch in LOCKED_CHANNELS:
            result[ch] = True
    return result


@dataclass(frozen=True, slots=True)
class Created:
    id: UUID
    user_id: UUID
    type: str
    seq: int


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    id: UUID
    type: str
    occurred_at: datetime
    envelope: str  # JSON text


@dataclass
class Pending:
    """Notifications and webhook deliveries asked for while handling a run of events (or one
    request), written together by :meth:`NotificationService.flush`: a handful of statements
    per tenant (identity's addresses; locks and preferences; one insert of notifications,
    deliveries and ``pg_notify``; the webhook deliveries) instead of as many per event."""

    drafts: dict[UUID, list[tuple[UUID | None, Draft]]] = field(default_factory=dict)
    webhook_events: dict[UUID, list[WebhookEvent]] = field(default_factory=dict)

    def notify(self, tenant_id: UUID, drafts: list[Draft], *,
               event_id: UUID | None = None) -> None:
        """Each draft is created once per (event, user, type): a redelivered event creates
        nothing twice."""
        if drafts:
            self.drafts.setdefault(tenant_id, []).extend((event_id, d) for d in drafts)

    def relay(self, tenant_id: UUID, webhook_event: WebhookEvent) -> None:
        """One pending delivery per enabled subscription naming this event type (or ``*``)
        that existed when the event happened."""
        self.webhook_events.setdefault(tenant_id, []).append(webhook_event)


@dataclass
class _Committed:
    """What a transaction's notifications announce once it commits (never before: a rolled
    back notification is never counted nor pushed)."""

    created: list[Created] = field(default_factory=list)
    live: list[dict[str, Any]] = field(default_factory=list)


_AFTER_COMMIT = "notifications.after_commit"
_LISTENING = "notifications.listening"


class NotificationService:
    def __init__(self, *, publisher: Publisher, base_url: str) -> None:
        self.publisher = publisher
        self.base_url = base_url.rstrip("/")

    # ---- creation -----------------------------------------------------------------------
    async def notify(self, session: AsyncSession, tenant_id: UUID, drafts: list[Draft],
                     *, event_id: UUID | None = None) -> list[Created]:
        """Create the drafts now, in the caller's transaction (see :meth:`flush`)."""
        pending = Pending()
        pending.notify(tenant_id, drafts, event_id=event_id)
        return await self.flush(session, pending)

    async def flush(self, session: AsyncSession, pending: Pending) -> list[Created]:
        """Write what ``pending`` asks for in the caller's transaction: each draft once per
        (event, user, type), with one delivery row per enabled channel, announced to the
        real-time streams; the webhook deliveries. Drafts addressed to users who are not
        ACTIVE are dropped unless they carry their own email address. Returns the
        notifications created."""
        created: list[Created] = []
        for tenant_id in {*pending.drafts, *pending.webhook_events}:
            await set_tenant(session, tenant_id)
            drafts = pending.drafts.get(tenant_id)
            if drafts:
                created += await self._create(session, tenant_id, drafts)
            hooks = pending.webhook_events.get(tenant_id)
            if hooks:
                await WebhookRepository(session).enqueue_webhook_deliveries(
                    tenant_id, hooks, now())
        pending.drafts, pending.webhook_events = {}, {}
        return created

    def _after_commit(self, session: AsyncSession) -> _Committed:
        """The announcements of this session's transaction, made by a listener once it
        commits (dropped if it rolls back)."""
        sync = session.sync_session
        committed: _Committed | None = sync.info.get(_AFTER_COMMIT)
        if committed is not None:
            return committed
        committed = sync.info[_AFTER_COMMIT] = _Committed()
        if not sync.info.get(_LISTENING):  # once per session, whatever its transactions
            sync.info[_LISTENING] = True

            def announce(_sync: Any) -> None:
                done: _Committed | None = sync.info.pop(_AFTER_COMMIT, None)
                if done is not None:
                    self._committed(done)

            def forget(_sync: Any) -> None:
                sync.info.pop(_AFTER_COMMIT, None)

            event.listen(sync, "after_commit", announce)
            event.listen(sync, "after_rollback", forget)
        return committed

    def _committed(self, committed: _Committed) -> None:
        for created in committed.created:
            NOTIFICATIONS_CREATED.labels(created.type).inc()
        if committed.live:
            self.publisher.publish_soon(committed.live)

    async def _create(self, session: AsyncSession, tenant_id: UUID,
                      queued: list[tuple[UUID | None, Draft]]) -> list[Created]:
        need_address = {d.user_id for _, d in queued if d.email is None}
        emails = await active_user_emails(session, need_address) if need_address else {}
        queued = [(e, d) for e, d in queued if d.email is not None or d.user_id in emails]
        if not queued:
            return []
        repo = InboxRepository(session)
        prefs = await repo.lock_and_preferences(tenant_id, list({d.user_id for _, d in queued}))
        at = now()
        rows: list[NewNotification] = []
        deliveries: list[NewDelivery] = []
        messages: dict[UUID, tuple[Draft, dict[str, Any], bool]] = {}
        for event_id, draft in queued:
            stored = prefs.get(draft.user_id)
            channels = effective_channels(stored, draft.type)
            nid = uuid4()
            notification = NotificationRead(
                id=nid, type=draft.type, title=draft.title, body=draft.body, data=draft.data,
                read_at=None, created_at=at).wire()
            document = {key: notification[key] for key in NotificationRead.DOCUMENT}
            message = realtime_message(tenant_id, draft.user_id, nid, 0, notification)
            messages[nid] = (draft, message, channels[Channel.IN_APP])
            rows.append(NewNotification(
                nid, event_id, draft.user_id, draft.type, channels[Channel.IN_APP],
                orjson.dumps(document).decode(), encode(message)))
            deliveries += self._deliveries(nid, draft, channels,
                                           draft.email or emails.get(draft.user_id),
                                           stored.phone if stored is not None else None)
        redis = self.publisher.redis_url is not None
        seqs = await repo.create_notifications(tenant_id, at, rows, deliveries,
                                               pg_notify=not redis)
        committed = self._after_commit(session)
        created: list[Created] = []
        for nid, seq in seqs.items():
            draft, message, in_app = messages[nid]
            created.append(Created(nid, draft.user_id, draft.type, seq))
            if redis and in_app:
                committed.live.append({**message, "seq": seq})
        committed.created += created
        return created

    def _deliveries(self, nid: UUID, draft: Draft, channels: dict[Channel, bool],
                    email: str | None, phone: str | None) -> list[NewDelivery]:
        wants_email = channels[Channel.EMAIL] and bool(email)
        wants_sms = channels[Channel.SMS] and bool(phone)
        if not (wants_email or wants_sms):
            return []
        context: dict[str, Any] = {
            "title": draft.title, "body": draft.body, "data": draft.data,
            "base_url": self.base_url, "locked": TYPES[draft.type].locked,
            **draft.data, **draft.secret_context,
        }
        result: list[NewDelivery] = []
        template = TYPES[draft.type].template
        if wants_email and email:
            rendered = render_email(template, context)
            result.append(NewDelivery(uuid4(), nid, "email", template, email, orjson.dumps({
                "subject": rendered.subject, "text": rendered.text, "html": rendered.html,
                "notificationId": str(nid), "template": template}).decode()))
        if wants_sms and phone:
            result.append(NewDelivery(uuid4(), nid, "sms", "notification.sms", phone,
                                      orjson.dumps({"text": render_sms(context),
                                                    "notificationId": str(nid),
                                                    "template": "notification.sms"}).decode()))
        return result

    # ---- the user's own notifications ----------------------------------------------------
    async def list_page(
        self, session: AsyncSession, auth: AuthContext, *, unread: bool, cursor: str | None,
        limit: int,
    ) -> Page[NotificationRead]:
        rows, next_cursor = cut_time_id_page(await InboxRepository(session).list_for_user(
            auth.user_id, unread=unread, after=decode_time_id_cursor(cursor), limit=limit + 1
        ), limit, _time_id)
        return Page[NotificationRead](items=[read_model(r) for r in rows], next_cursor=next_cursor)

    async def unread_count(self, session: AsyncSession, auth: AuthContext) -> int:
        return await InboxRepository(session).unread_count(auth.user_id)

    async def mark_read(self, session: AsyncSession, auth: AuthContext, nid: UUID) -> None:
        if not await InboxRepository(session).mark_read(auth.user_id, nid, now()):
            raise NotificationNotFound("No such notification.")
        await emit(session, events.NotificationMarkedRead(), subject_id=nid)

    async def mark_all_read(self, session: AsyncSession, auth: AuthContext) -> None:
        await InboxRepository(session).mark_all_read(auth.user_id, now())
        await emit(session, events.AllNotificationsRead(), subject_id=auth.user_id)

    async def since(self, session: AsyncSession, tenant_id: UUID, user_id: UUID, seq: int,
                    limit: int = 500) -> list[Notification]:
        await set_tenant(session, tenant_id)
        return await InboxRepository(session).since(user_id, seq, limit)

    async def get(self, session: AsyncSession, tenant_id: UUID,
                  notification_id: UUID) -> Notification | None:
        await set_tenant(session, tenant_id)
        return await InboxRepository(session).get_notification(notification_id)

    # ---- preferences --------------------------------------------------------------------
    async def preferences(self, session: AsyncSession, auth: AuthContext) -> PreferencesRead:
        row = (await InboxRepository(session).preferences({auth.user_id})).get(
            auth.user_id)
        return _preferences_read(row)

    async def update_preferences(
        self, session: AsyncSession, auth: AuthContext, body: PreferencesUpdate
    ) -> PreferencesRead:
        repo = InboxRepository(session)
        row = (await repo.preferences({auth.user_id})).get(auth.user_id)
        channels: dict[str, dict[str, bool]] = {
            k: dict(v) for k, v in (row.channels if row is not None else {}).items()}
        errors: list[FieldError] = []
        locked: list[FieldError] = []
        for type_, update in body.types.items():
            spec = TYPES.get(type_)
            if spec is None:
                errors.append(FieldError(f"types.{type_}", "unknown notification type"))
                continue
            for ch in Channel:
                value = getattr(update, {"inApp": "in_app"}.get(ch.value, ch.value))
                if value is None:
                    continue
                if spec.locked and ch in LOCKED_CHANNELS and not value:
                    locked.append(FieldError(f"types.{type_}.{ch.value}",
                                             "account-security messages cannot be switched off"))
                    continue
                channels.setdefault(type_, {})[ch.value] = value
        if errors:  # every problem of the body in one answer, unknown types first
            raise ValidationFailed(
                "Unknown notification type" + (
                    "; account-security notifications cannot be switched off." if locked
                    else "."),
                errors=errors + locked)
        if locked:
            raise LockedPreference("Account-security notifications cannot be switched off.",
                                   errors=locked)
        old_phone = row.phone if row is not None else None
        phone = body.phone if "phone" in body.model_fields_set else old_phone
        await repo.save_preferences({"tenant_id": auth.tenant_id, "user_id": auth.user_id,
                                     "phone": phone, "channels": channels,
                                     "updated_at": now()})
        changes: dict[str, list[Any]] = {}
        old_channels = row.channels if row is not None else {}
        if channels != old_channels:
            changes["channels"] = [old_channels, channels]
        if phone != old_phone:
            changes["phone"] = [old_phone, phone]
        await emit(session, events.PreferencesUpdated(changes=changes), subject_id=auth.user_id)
        return _preferences_read(StoredPreferences(phone, channels))

    # ---- deliveries (ADMIN) -------------------------------------------------------------
    async def deliveries(
        self, session: AsyncSession, auth: AuthContext, *, cursor: str | None, limit: int,
        status: str | None,
    ) -> Page[DeliveryRead]:
        if not may(auth, NotificationAction.LIST_DELIVERIES):
            raise await deny(session, auth, NotificationAction.LIST_DELIVERIES.value,
                             subject_type="delivery", subject_id=auth.tenant_id,
                             detail="Only ADMINs may list deliveries.")
        rows, next_cursor = cut_time_id_page(await InboxRepository(session).list_deliveries(
            after=decode_time_id_cursor(cursor), limit=limit + 1, status=status), limit, _time_id)
        return Page[DeliveryRead].of(rows, next_cursor)


def _preferences_read(row: StoredPreferences | None) -> PreferencesRead:
    types = {}
    for type_, spec in TYPES.items():
        eff = effective_channels(row, type_)
        types[type_] = ChannelPreferences(in_app=eff[Channel.IN_APP], email=eff[Channel.EMAIL],
                                          sms=eff[Channel.SMS], locked=spec.locked)
    return PreferencesRead(phone=row.phone if row is not None else None, types=types)



def _time_id(row: Notification | Delivery) -> tuple[datetime, UUID]:
    return row.created_at, row.id

