"""Webhook subscriptions (ADMIN): signed, retried, auto-disabled, SSRF-guarded.

A delivery is a POST of the event envelope with ``X-PantheraHive-Event-Id`` and
``X-PantheraHive-Signature: t=<unix>,v1=<hex>`` where the hex is HMAC-SHA256 of
``"<t>.<body>"`` under the subscription's secret; during the 24 h after a rotation a second
``v1=`` carries the signature under the previous secret. Secrets are stored encrypted
(Fernet, key derived from the platform's JWT secret), since signing needs them back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import orjson
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.clock import now
from pantherahive.core.errors import FieldError, ValidationFailed
from pantherahive.core.pagination import cut_time_id_page, decode_time_id_cursor
from pantherahive.core.schemas import Page
from pantherahive.domains.identity.api import AuthContext
from pantherahive.domains.notifications import events
from pantherahive.domains.notifications.errors import UnsafeWebhookUrl, WebhookNotFound
from pantherahive.domains.notifications.permissions import NotificationAction, may
from pantherahive.domains.notifications.tables import Webhook, WebhookDelivery
from pantherahive.domains.notifications.webhooks.egress import (
    Resolver,
    checked_addresses,
    system_resolver,
)
from pantherahive.domains.notifications.webhooks.repository import WebhookRepository
from pantherahive.domains.notifications.webhooks.schemas import (
    WebhookCreate,
    WebhookDeliveryRead,
    WebhookRead,
    WebhookSecret,
    WebhookUpdate,
    WebhookWithSecret,
)
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.security.authz import deny

SIGNATURE_HEADER = "X-PantheraHive-Signature"
EVENT_ID_HEADER = "X-PantheraHive-Event-Id"
ROTATION_GRACE = timedelta(hours=24)
_EVENT_PATTERN = "abcdefghijklmnopqrstuvwxyz0123456789_."


def sign(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secrets_: list[str], timestamp: int, body: bytes) -> str:
    return ",".join([f"t={timestamp}", *(f"v1={sign(s, timestamp, body)}" for s in secrets_)])


async def check_url(url: str, *, allow_private: bool,
                    resolver: Resolver = system_resolver) -> None:
    """Refuse what could reach inside the network: non-https, loopback/private/link-local
    targets (every address the host resolves to, IPv4 embedded in IPv6 included),
    credentials in the URL. Deliveries check again on the connection itself
    (``egress.PinnedBackend``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeWebhookUrl("must be an absolute https URL")
    if parts.scheme != "https" and not allow_private:
        raise UnsafeWebhookUrl("must use https")
    if parts.username or parts.password:
        raise UnsafeWebhookUrl("must not carry credentials")
    if allow_private:
        return
    await checked_addresses(parts.hostname, parts.port or 443, resolver=resolver,
                            allow_private=False)


def _validate_events(events: list[str]) -> list[str]:
    bad = [e for e in events if e != "*" and (
        not e or len(e) > 100 or "." not in e or any(c not in _EVENT_PATTERN for c in e))]
    if bad:
        raise ValidationFailed("Unknown event type format.",
                               errors=[FieldError("events", f"invalid event type {b!r}")
                                       for b in bad])
    return sorted(set(events))


class WebhookService:
    def __init__(self, *, key_material: str, allow_private: bool,
                 resolver: Resolver = system_resolver) -> None:
        digest = hashlib.sha256(b"pantherahive-webhook-secrets:" + key_material.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self.allow_private = allow_private
        self.resolver = resolver  # every lookup of a webhook host, here and in the worker

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, token: str) -> str:
        return self._fernet.decrypt(token.encode()).decode()

    def signing_secrets(self, hook: Webhook, at: datetime) -> list[str]:
        result = [self.decrypt(hook.secret_enc)]
        if (hook.previous_secret_enc and hook.previous_secret_expires_at
                and hook.previous_secret_expires_at > at):
            result.append(self.decrypt(hook.previous_secret_enc))
        return result

    @staticmethod
    async def _require(session: AsyncSession, auth: AuthContext,
                       webhook_id: UUID | None = None) -> None:
        if not may(auth, NotificationAction.MANAGE_WEBHOOKS):
            raise await deny(session, auth, NotificationAction.MANAGE_WEBHOOKS.value,
                             subject_type="webhook", subject_id=webhook_id or auth.tenant_id,
                             detail="Only ADMINs may manage webhooks.")

    async def _get(self, session: AsyncSession, webhook_id: UUID, *,
                   for_update: bool = False) -> Webhook:
        hook = await WebhookRepository(session).get_webhook(webhook_id,
                                                                 for_update=for_update)
        if hook is None:
            raise WebhookNotFound("No such webhook.")
        return hook

    async def create(self, session: AsyncSession, auth: AuthContext,
                     body: WebhookCreate) -> WebhookWithSecret:
        await self._require(session, auth)
        url = str(body.url)
        await check_url(url, allow_private=self.allow_private, resolver=self.resolver)
        secret = body.secret or "whsec_" + secrets.token_urlsafe(32)
        at = now()
        hook = Webhook(
            id=uuid4(), tenant_id=auth.tenant_id, url=url, events=_validate_events(body.events),
            secret_enc=self.encrypt(secret), previous_secret_enc=None,
            previous_secret_expires_at=None, enabled=True, consecutive_failures=0,
            disabled_reason=None, created_at=at, updated_at=at,
        )
        await WebhookRepository(session).add(hook)
        await emit(session, events.WebhookCreated(**_state(hook)), subject_id=hook.id)
        return WebhookWithSecret(**WebhookRead.model_validate(hook).model_dump(), secret=secret)

    async def list_page(self, session: AsyncSession, auth: AuthContext, *, cursor: str | None,
                   limit: int) -> Page[WebhookRead]:
        await self._require(session, auth)
        rows, nxt = cut_time_id_page(await WebhookRepository(session).list_webhooks(
            after=decode_time_id_cursor(cursor), limit=limit + 1), limit, _time_id)
        return Page[WebhookRead].of(rows, nxt)

    async def get(self, session: AsyncSession, auth: AuthContext, webhook_id: UUID) -> WebhookRead:
        await self._require(session, auth, webhook_id)
        return WebhookRead.model_validate(await self._get(session, webhook_id))

    async def update(self, session: AsyncSession, auth: AuthContext, webhook_id: UUID,
                     body: WebhookUpdate) -> WebhookRead:
        await self._require(session, auth, webhook_id)
        hook = await self._get(session, webhook_id, for_update=True)
        before = _state(hook)
        if body.url is not None:
            await check_url(str(body.url), allow_private=self.allow_private,
                            resolver=self.resolver)
            hook.url = str(body.url)
        if body.events is not None:
            hook.events = _validate_events(body.events)
        if body.enabled is not None:
            hook.enabled = body.enabled
            if body.enabled:
                hook.consecutive_failures = 0
                hook.disabled_reason = None
        hook.updated_at = now()
        await session.flush()
        after = _state(hook)
        changes = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
        await emit(session, events.WebhookUpdated(changes=changes), subject_id=hook.id)
        return WebhookRead.model_validate(hook)

    async def delete(self, session: AsyncSession, auth: AuthContext, webhook_id: UUID) -> None:
        await self._require(session, auth, webhook_id)
        hook = await self._get(session, webhook_id)
        url = hook.url
        await session.delete(hook)
        await session.flush()
        await emit(session, events.WebhookDeleted(url=url), subject_id=webhook_id)

    async def rotate_secret(self, session: AsyncSession, auth: AuthContext,
                            webhook_id: UUID) -> WebhookSecret:
        await self._require(session, auth, webhook_id)
        hook = await self._get(session, webhook_id, for_update=True)
        secret = "whsec_" + secrets.token_urlsafe(32)
        at = now()
        hook.previous_secret_enc = hook.secret_enc
        hook.previous_secret_expires_at = at + ROTATION_GRACE
        hook.secret_enc = self.encrypt(secret)
        hook.updated_at = at
        await session.flush()
        await emit(session, events.WebhookSecretRotated(
            previous_secret_expires_at=(at + ROTATION_GRACE).isoformat()), subject_id=webhook_id)
        return WebhookSecret(secret=secret,
                             previous_secret_expires_at=hook.previous_secret_expires_at)

    async def deliveries(self, session: AsyncSession, auth: AuthContext, webhook_id: UUID, *,
                         cursor: str | None, limit: int) -> Page[WebhookDeliveryRead]:
        await self._require(session, auth, webhook_id)
        await self._get(session, webhook_id)
        rows, nxt = cut_time_id_page(await WebhookRepository(session).webhook_deliveries(
            webhook_id, after=decode_time_id_cursor(cursor), limit=limit + 1), limit, _time_id)
        return Page[WebhookDeliveryRead].of(rows, nxt)

    async def redeliver(self, session: AsyncSession, auth: AuthContext, webhook_id: UUID,
                        delivery_id: UUID) -> WebhookDeliveryRead:
        await self._require(session, auth, webhook_id)
        await self._get(session, webhook_id)
        repo = WebhookRepository(session)
        original = await repo.webhook_delivery(delivery_id)
        if original is None or original.webhook_id != webhook_id:
            raise WebhookNotFound("No such delivery of this webhook.")
        at = now()
        copy = WebhookDelivery(
            id=uuid4(), tenant_id=original.tenant_id, webhook_id=webhook_id,
            event_id=original.event_id, event_type=original.event_type,
            payload=original.payload, status="pending", attempts=0, response_status=None,
            duration_ms=None, last_error=None, next_attempt_at=at, created_at=at, sent_at=None,
            redelivery_of=original.id,
        )
        await repo.add(copy)
        await emit(session, events.WebhookRedeliveryRequested(
            delivery_id=copy.id, redelivery_of=original.id, event_id=original.event_id,
            event_type=original.event_type), subject_id=webhook_id)
        return WebhookDeliveryRead.model_validate(copy)


def body_of(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload)


def _time_id(row: Webhook | WebhookDelivery) -> tuple[datetime, UUID]:
    return row.created_at, row.id


def _state(hook: Webhook) -> dict[str, Any]:
    """What ``webhook.created`` carries and ``webhook.updated`` reports changes of."""
    return {"url": hook.url, "events": list(hook.events), "enabled": hook.enabled}
