"""Notification rules that do not depend on the triggering event: preferences, channel
deliveries, the in-app document store, stream tickets, and the real-time announcement."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import orjson
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.util import await_only

from pantherahive.core.errors import FieldError, Unauthenticated, ValidationFailed
from pantherahive.core.pagination import decode_time_id_cursor, encode_cursor
from pantherahive.core.schemas import Page
from pantherahive.domains.identity.api import AuthContext, active_user_emails, token_versions
from pantherahive.domains.notifications import events
from pantherahive.domains.notifications.catalog import LOCKED_CHANNELS, TYPES, Channel
from pantherahive.domains.notifications.errors import LockedPreference, NotificationNotFound
from pantherahive.domains.notifications.metrics import NOTIFICATIONS_CREATED
from pantherahive.domains.notifications.permissions import NotificationAction, may
from pantherahive.domains.notifications.realtime import Publisher, StreamPrincipal, encode
from pantherahive.domains.notifications.rendering import render_email, render_sms
from pantherahive.domains.notifications.repository import (
    NewDelivery,
    NewNotification,
    NotificationRepository,
    StoredPreferences,
)
from pantherahive.domains.notifications.schemas import (
    ChannelPreferences,
    DeliveryRead,
    NotificationRead,
    PreferencesRead,
    PreferencesUpdate,
    StreamTicketRead,
)
from pantherahive.domains.notifications.tables import Notification, StreamTicket
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.db.engine import set_tenant
from pantherahive.infra.security.authz import deny
from pantherahive.infra.security.tokens import new_opaque_token, parse_opaque_token

TICKET_PREFIX = "nst"
TICKET_TTL = timedelta(seconds=60)


def now() -> datetime:
    return datetime.now(UTC)


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
    doc = row.document
    return NotificationRead(
        id=row.id, type=row.type, title=doc.get("title", ""), body=doc.get("body", ""),
        data=doc.get("data", {}), read_at=row.read_at, created_at=row.created_at,
    )


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
class _Writes:
    """A transaction's notification writes, made together just before it commits."""

    drafts: dict[UUID, list[tuple[UUID | None, Draft]]] = field(default_factory=dict)
    webhook_events: dict[UUID, list[WebhookEvent]] = field(default_factory=dict)
    created: list[Created] = field(default_factory=list)
    live: list[dict[str, Any]] = field(default_factory=list)


_WRITES = "notifications.writes"
_LISTENING = "notifications.listening"


class NotificationService:
    def __init__(self, *, publisher: Publisher, base_url: str) -> None:
        self.publisher = publisher
        self.base_url = base_url.rstrip("/")

    # ---- creation -----------------------------------------------------------------------
    def notify(self, session: AsyncSession, tenant_id: UUID, drafts: list[Draft],
               *, event_id: UUID | None = None) -> None:
        """Create each draft once per (event, user, type), with one delivery row per enabled
        channel, and announce it — in the caller's transaction, just before it commits.
        Drafts addressed to users who are not ACTIVE then are dropped unless they carry
        their own email address.

        Deferred because this is the event consumer's hot path: the runtime handles a run of
        events in one transaction, and their notifications are then written with a handful
        of statements per tenant (identity's addresses; locks and preferences; one insert of
        notifications, deliveries and ``pg_notify``; the webhook deliveries) instead of as
        many per event. ``flush`` writes them earlier, for a caller that must know."""
        if drafts:
            self._writes(session).drafts.setdefault(tenant_id, []).extend(
                (event_id, draft) for draft in drafts)

    def enqueue_webhooks(self, session: AsyncSession, tenant_id: UUID,
                         webhook_event: WebhookEvent) -> None:
        """One pending delivery per enabled subscription naming this event type (or ``*``)
        that existed when the event happened, written with the notifications."""
        self._writes(session).webhook_events.setdefault(tenant_id, []).append(webhook_event)

    def _writes(self, session: AsyncSession) -> _Writes:
        writes: _Writes | None = session.info.get(_WRITES)
        if writes is not None:
            return writes
        writes = session.info[_WRITES] = _Writes()
        sync = session.sync_session
        if not sync.info.get(_LISTENING):  # once per session, whatever its transactions
            sync.info[_LISTENING] = True

            def before_commit(_sync: Any) -> None:
                # Runs inside SQLAlchemy's greenlet: await_only may wait on the flush.
                if sync.info.get(_WRITES) is not None:
                    await_only(self.flush(session))

            def after_commit(_sync: Any) -> None:
                done: _Writes | None = sync.info.pop(_WRITES, None)
                if done is not None:
                    self._committed(done)

            def after_rollback(_sync: Any) -> None:
                sync.info.pop(_WRITES, None)

            event.listen(sync, "before_commit", before_commit)
            event.listen(sync, "after_commit", after_commit)
            event.listen(sync, "after_rollback", after_rollback)
        return writes

    def _committed(self, writes: _Writes) -> None:
        for created in writes.created:
            NOTIFICATIONS_CREATED.labels(created.type).inc()
        if writes.live:
            self.publisher.publish_soon(writes.live)

    async def flush(self, session: AsyncSession) -> list[Created]:
        """Write what ``notify`` and ``enqueue_webhooks`` queued in this transaction; returns
        the notifications created (so far, in this transaction)."""
        writes: _Writes | None = session.info.get(_WRITES)
        if writes is None:
            return []
        drafts, writes.drafts = writes.drafts, {}
        hooks, writes.webhook_events = writes.webhook_events, {}
        for tenant_id in {*drafts, *hooks}:
            await set_tenant(session, tenant_id)
            if tenant_id in drafts:
                await self._create(session, tenant_id, drafts[tenant_id], writes)
            if tenant_id in hooks:
                await NotificationRepository(session).enqueue_webhook_deliveries(
                    tenant_id, hooks[tenant_id], now())
        return list(writes.created)

    async def _create(self, session: AsyncSession, tenant_id: UUID,
                      queued: list[tuple[UUID | None, Draft]], writes: _Writes) -> None:
        need_address = {d.user_id for _, d in queued if d.email is None}
        emails = await active_user_emails(session, need_address) if need_address else {}
        queued = [(e, d) for e, d in queued if d.email is not None or d.user_id in emails]
        if not queued:
            return
        repo = NotificationRepository(session)
        prefs = await repo.lock_and_preferences(tenant_id, list({d.user_id for _, d in queued}))
        at = now()
        created_at = at.isoformat().replace("+00:00", "Z")
        rows: list[NewNotification] = []
        deliveries: list[NewDelivery] = []
        messages: dict[UUID, tuple[Draft, dict[str, Any], bool]] = {}
        for event_id, draft in queued:
            stored = prefs.get(draft.user_id)
            channels = effective_channels(stored, draft.type)
            nid = uuid4()
            document = {"type": draft.type, "title": draft.title, "body": draft.body,
                        "data": draft.data}
            notification = {"id": str(nid), **document, "readAt": None,
                            "createdAt": created_at}
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
        for nid, seq in seqs.items():
            draft, message, in_app = messages[nid]
            writes.created.append(Created(nid, draft.user_id, draft.type, seq))
            if redis and in_app:
                writes.live.append({**message, "seq": seq})

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
        rows = await NotificationRepository(session).list_for_user(
            auth.user_id, unread=unread, after=decode_time_id_cursor(cursor), limit=limit + 1
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = (
            encode_cursor([rows[-1].created_at.isoformat(), str(rows[-1].id)]) if more else None
        )
        return Page[NotificationRead](items=[read_model(r) for r in rows], next_cursor=next_cursor)

    async def unread_count(self, session: AsyncSession, auth: AuthContext) -> int:
        return await NotificationRepository(session).unread_count(auth.user_id)

    async def mark_read(self, session: AsyncSession, auth: AuthContext, nid: UUID) -> None:
        if not await NotificationRepository(session).mark_read(auth.user_id, nid, now()):
            raise NotificationNotFound("No such notification.")
        await emit(session, events.NOTIFICATION_READ, subject_type="notification",
                   subject_id=nid, data={})

    async def mark_all_read(self, session: AsyncSession, auth: AuthContext) -> None:
        await NotificationRepository(session).mark_all_read(auth.user_id, now())
        await emit(session, events.NOTIFICATIONS_ALL_READ, subject_type="user",
                   subject_id=auth.user_id, data={})

    async def since(self, session: AsyncSession, tenant_id: UUID, user_id: UUID, seq: int,
                    limit: int = 500) -> list[Notification]:
        await set_tenant(session, tenant_id)
        return await NotificationRepository(session).since(user_id, seq, limit)

    async def get(self, session: AsyncSession, tenant_id: UUID,
                  notification_id: UUID) -> Notification | None:
        await set_tenant(session, tenant_id)
        return await NotificationRepository(session).get_notification(notification_id)

    # ---- preferences --------------------------------------------------------------------
    async def preferences(self, session: AsyncSession, auth: AuthContext) -> PreferencesRead:
        row = (await NotificationRepository(session).preferences({auth.user_id})).get(
            auth.user_id)
        return _preferences_read(row)

    async def update_preferences(
        self, session: AsyncSession, auth: AuthContext, body: PreferencesUpdate
    ) -> PreferencesRead:
        repo = NotificationRepository(session)
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
        await emit(session, events.PREFERENCES_UPDATED, subject_type="user",
                   subject_id=auth.user_id, data={"changes": changes})
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
        rows = await NotificationRepository(session).list_deliveries(
            after=decode_time_id_cursor(cursor), limit=limit + 1, status=status)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = (
            encode_cursor([rows[-1].created_at.isoformat(), str(rows[-1].id)]) if more else None
        )
        return Page[DeliveryRead](items=[DeliveryRead.model_validate(r) for r in rows],
                                  next_cursor=next_cursor)

    # ---- streams ----------------------------------------------------------------------
    async def issue_ticket(self, session: AsyncSession, auth: AuthContext, *,
                           token_version: int, token_expires_at: datetime) -> StreamTicketRead:
        ticket, digest = new_opaque_token(TICKET_PREFIX, auth.tenant_id)
        await NotificationRepository(session).add(StreamTicket(
            ticket_hash=digest, tenant_id=auth.tenant_id, user_id=auth.user_id,
            expires_at=now() + TICKET_TTL, used_at=None, token_version=token_version,
            token_expires_at=token_expires_at))
        # A credential was issued: audited like a login (the ticket itself never is).
        await emit(session, events.STREAM_TICKET_ISSUED, subject_type="user",
                   subject_id=auth.user_id,
                   data={"expiresIn": int(TICKET_TTL.total_seconds())})
        return StreamTicketRead(ticket=ticket, expires_in=int(TICKET_TTL.total_seconds()))

    async def redeem_ticket(self, session: AsyncSession, ticket: str) -> StreamPrincipal:
        """The holder of a valid, unused ticket — which is deleted by this call (spent
        tickets leave no row behind; the worker purges expired ones)."""
        parsed = parse_opaque_token(TICKET_PREFIX, ticket)
        if parsed is None:
            raise Unauthenticated("The stream ticket is not valid.")
        tenant_id, digest = parsed
        await set_tenant(session, tenant_id)
        spent = await NotificationRepository(session).consume_ticket(digest, now())
        if spent is None:
            raise Unauthenticated("The stream ticket is not valid, expired or used.")
        principal = StreamPrincipal(tenant_id, *spent)
        if not await self.still_valid(session, [principal]):
            raise Unauthenticated("The stream ticket is not valid, expired or used.")
        return principal

    async def still_valid(self, session: AsyncSession,
                          principals: list[StreamPrincipal]) -> list[StreamPrincipal]:
        """Those whose access token would still work now: not expired, the user ACTIVE and
        the token's version current. All of one tenant (the session's)."""
        at = now()
        live = [p for p in principals if p.expires_at > at]
        versions = await token_versions(session, {p.user_id for p in live})
        return [p for p in live if versions.get(p.user_id) == p.token_version]

    async def purge_tickets(self, session: AsyncSession) -> int:
        return await NotificationRepository(session).purge_tickets(limit=1000)


def _preferences_read(row: StoredPreferences | None) -> PreferencesRead:
    types = {}
    for type_, spec in TYPES.items():
        eff = effective_channels(row, type_)
        types[type_] = ChannelPreferences(in_app=eff[Channel.IN_APP], email=eff[Channel.EMAIL],
                                          sms=eff[Channel.SMS], locked=spec.locked)
    return PreferencesRead(phone=row.phone if row is not None else None, types=types)

