"""Notification rules that do not depend on the triggering event: preferences, channel
deliveries, the in-app document store, stream tickets, and the real-time announcement."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.errors import FieldError, Unauthenticated, ValidationFailed
from pantherahive.core.pagination import decode_time_id_cursor, encode_cursor
from pantherahive.core.schemas import Page
from pantherahive.domains.identity.api import AuthContext, active_user_emails, active_user_ids
from pantherahive.domains.notifications import events
from pantherahive.domains.notifications.catalog import LOCKED_CHANNELS, TYPES, Channel
from pantherahive.domains.notifications.errors import LockedPreference, NotificationNotFound
from pantherahive.domains.notifications.permissions import NotificationAction, may
from pantherahive.domains.notifications.realtime import Publisher
from pantherahive.domains.notifications.rendering import render_email, render_sms
from pantherahive.domains.notifications.repository import NotificationRepository
from pantherahive.domains.notifications.schemas import (
    ChannelPreferences,
    DeliveryRead,
    NotificationRead,
    PreferencesRead,
    PreferencesUpdate,
    StreamTicketRead,
)
from pantherahive.domains.notifications.tables import (
    Delivery,
    Notification,
    Preferences,
    StreamTicket,
)
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


def realtime_message(row: Notification) -> dict[str, Any]:
    return {
        "tenantId": str(row.tenant_id),
        "userId": str(row.user_id),
        "id": str(row.id),
        "seq": row.seq,
        "notification": read_model(row).model_dump(mode="json", by_alias=True),
    }


def effective_channels(row: Preferences | None, type_: str) -> dict[Channel, bool]:
    spec = TYPES[type_]
    stored = (row.channels if row is not None else {}).get(type_, {})
    result = {ch: bool(stored.get(ch.value, spec.default(ch))) for ch in Channel}
    if spec.locked:
        for ch in LOCKED_CHANNELS:
            result[ch] = True
    return result


class NotificationService:
    def __init__(self, *, publisher: Publisher, base_url: str) -> None:
        self.publisher = publisher
        self.base_url = base_url.rstrip("/")

    # ---- creation -----------------------------------------------------------------------
    async def notify(
        self, session: AsyncSession, tenant_id: UUID, drafts: list[Draft],
        *, event_id: UUID | None = None,
    ) -> list[Notification]:
        """Create each draft once per (event, user, type), with one delivery row per enabled
        channel, and announce it — all in the caller's transaction. Drafts addressed to
        users who are not ACTIVE are dropped unless they carry their own email address."""
        if not drafts:
            return []
        repo = NotificationRepository(session)
        users = {d.user_id for d in drafts}
        emails = await active_user_emails(session, {d.user_id for d in drafts if d.email is None})
        prefs = await repo.preferences(users)
        created: list[Notification] = []
        for draft in drafts:
            if draft.email is None and draft.user_id not in emails:
                continue
            channels = effective_channels(prefs.get(draft.user_id), draft.type)
            row = await repo.insert_notification({
                "id": uuid4(), "tenant_id": tenant_id, "user_id": draft.user_id,
                "event_id": event_id, "type": draft.type, "in_app": channels[Channel.IN_APP],
                "document": {"type": draft.type, "title": draft.title, "body": draft.body,
                             "data": draft.data},
                "created_at": now(),
            })
            if row is None:
                continue
            created.append(row)
            await self._deliveries(repo, row, draft, channels,
                                   draft.email or emails.get(draft.user_id),
                                   prefs.get(draft.user_id))
            if row.in_app:
                await self.publisher.publish(session, realtime_message(row))
        return created

    async def _deliveries(
        self, repo: NotificationRepository, row: Notification, draft: Draft,
        channels: dict[Channel, bool], email: str | None, prefs: Preferences | None,
    ) -> None:
        context: dict[str, Any] = {
            "title": draft.title, "body": draft.body, "data": draft.data,
            "base_url": self.base_url, "locked": TYPES[draft.type].locked,
            **draft.data, **draft.secret_context,
        }
        template = TYPES[draft.type].template
        if channels[Channel.EMAIL] and email:
            rendered = render_email(template, context)
            await repo.add(self._delivery(row, "email", template, email, {
                "subject": rendered.subject, "text": rendered.text, "html": rendered.html,
                "notificationId": str(row.id)}))
        phone = prefs.phone if prefs is not None else None
        if channels[Channel.SMS] and phone:
            await repo.add(self._delivery(row, "sms", "notification.sms", phone, {
                "text": render_sms(context), "notificationId": str(row.id)}))

    @staticmethod
    def _delivery(row: Notification, channel: str, template: str, recipient: str,
                  payload: dict[str, Any]) -> Delivery:
        at = now()
        return Delivery(
            id=uuid4(), tenant_id=row.tenant_id, notification_id=row.id, channel=channel,
            template_name=template, recipient=recipient, status="pending", attempts=0,
            last_error=None, payload=payload, next_attempt_at=at, created_at=at, sent_at=None,
        )

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
        if errors:
            raise ValidationFailed("Unknown notification type.", errors=errors)
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
        saved = Preferences(tenant_id=auth.tenant_id, user_id=auth.user_id, phone=phone,
                            channels=channels, updated_at=now())
        return _preferences_read(saved)

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

    # ---- stream tickets -----------------------------------------------------------------
    async def issue_ticket(self, session: AsyncSession, auth: AuthContext) -> StreamTicketRead:
        ticket, digest = new_opaque_token(TICKET_PREFIX, auth.tenant_id)
        await NotificationRepository(session).add(StreamTicket(
            ticket_hash=digest, tenant_id=auth.tenant_id, user_id=auth.user_id,
            expires_at=now() + TICKET_TTL, used_at=None))
        # A credential was issued: audited like a login (the ticket itself never is).
        await emit(session, events.STREAM_TICKET_ISSUED, subject_type="user",
                   subject_id=auth.user_id,
                   data={"expiresIn": int(TICKET_TTL.total_seconds())})
        return StreamTicketRead(ticket=ticket, expires_in=int(TICKET_TTL.total_seconds()))

    async def redeem_ticket(self, session: AsyncSession, ticket: str) -> tuple[UUID, UUID]:
        """(tenant, user) of a valid, unused ticket — which is used up by this call."""
        parsed = parse_opaque_token(TICKET_PREFIX, ticket)
        if parsed is None:
            raise Unauthenticated("The stream ticket is not valid.")
        tenant_id, digest = parsed
        await set_tenant(session, tenant_id)
        user_id = await NotificationRepository(session).consume_ticket(digest, now())
        if user_id is None or not await active_user_ids(session, {user_id}):
            raise Unauthenticated("The stream ticket is not valid, expired or used.")
        return tenant_id, user_id


def _preferences_read(row: Preferences | None) -> PreferencesRead:
    types = {}
    for type_, spec in TYPES.items():
        eff = effective_channels(row, type_)
        types[type_] = ChannelPreferences(in_app=eff[Channel.IN_APP], email=eff[Channel.EMAIL],
                                          sms=eff[Channel.SMS], locked=spec.locked)
    return PreferencesRead(phone=row.phone if row is not None else None, types=types)
