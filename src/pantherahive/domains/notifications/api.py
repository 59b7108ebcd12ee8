"""Notifications' public face. Nothing imports notifications but the composition roots
(``main.py``, ``consumers.py``): ``main`` builds this runtime — the service, the
account-message sender it hands to identity, the event consumer bound to the service, the
real-time hub and listener, and the delivery worker."""

from __future__ import annotations

import asyncio
from uuid import UUID

from pantherahive.domains.notifications import handlers
from pantherahive.domains.notifications.background import BackgroundLoop
from pantherahive.domains.notifications.delivery.sender import NotificationSender
from pantherahive.domains.notifications.delivery.transports import (
    LogTransport,
    SmtpTransport,
    Transport,
    TwilioSmsTransport,
)
from pantherahive.domains.notifications.delivery.worker import DeliveryWorker
from pantherahive.domains.notifications.inbox.announce import Publisher
from pantherahive.domains.notifications.inbox.service import NotificationService
from pantherahive.domains.notifications.realtime.hub import (
    REVOKED,
    Hub,
    Listener,
    Stream,
    StreamPrincipal,
)
from pantherahive.domains.notifications.realtime.service import TicketService
from pantherahive.domains.notifications.webhooks.service import WebhookService
from pantherahive.infra.bus.consumer import ConsumerSpec
from pantherahive.infra.db.engine import Database, set_tenant
from pantherahive.infra.logging import get_logger
from pantherahive.settings import Settings

log = get_logger("pantherahive.notifications.runtime")

__all__ = ["CONSUMER", "NotificationSender", "NotificationsRuntime", "consumers",
           "notification_service"]

CONSUMER = handlers.CONSUMER


def notification_service(settings: Settings, publisher: Publisher | None = None,
                         ) -> NotificationService:
    return NotificationService(publisher=publisher or Publisher(settings.redis_url),
                               base_url=settings.app_base_url)


def consumers(service: NotificationService) -> list[ConsumerSpec]:
    """Notifications' event consumer, bound to ``service`` (its publisher and links)."""
    return handlers.consumers(service)


class NotificationsRuntime:
    def __init__(self, settings: Settings, db: Database, *, key_material: str) -> None:
        self.db = db
        self.hub = Hub()
        self.publisher = Publisher(settings.redis_url)
        self.service = notification_service(settings, self.publisher)
        self.tickets = TicketService()
        self.webhooks = WebhookService(key_material=key_material,
                                       allow_private=settings.webhook_allow_private_addresses)
        reveal = settings.env != "production"  # message text (and tokens) in the log
        self.transports: dict[str, Transport] = {
            "email": (SmtpTransport(settings) if settings.smtp_host
                      else LogTransport("email", reveal_content=reveal)),
            "sms": (TwilioSmsTransport(settings) if settings.sms_provider_url
                    else LogTransport("sms", reveal_content=reveal)),
        }
        self.worker = DeliveryWorker(db=db, settings=settings, transports=self.transports,
                                     service=self.service, webhooks=self.webhooks)
        self.listener = Listener(self.hub, engine=db.engine, redis_url=settings.redis_url)
        self.sender = NotificationSender(self.service)
        self.heartbeat_seconds = settings.sse_heartbeat_seconds
        self.worker_enabled = settings.notifications_worker_enabled
        self.consumers = consumers(self.service)
        self._guard = BackgroundLoop(self._guard_streams, "notifications-guard")

    async def check_streams(self) -> int:
        """End the open streams whose access token no longer works (expired; user not
        ACTIVE any more; token version bumped by a role or password change); returns how
        many were ended. One query per tenant with open streams."""
        by_tenant: dict[UUID, list[StreamPrincipal]] = {}
        queues: dict[StreamPrincipal, list[Stream]] = {}
        for queue, principal in self.hub.streams():
            by_tenant.setdefault(principal.tenant_id, []).append(principal)
            queues.setdefault(principal, []).append(queue)
        ended = 0
        for tenant_id, principals in by_tenant.items():
            async with self.db.sessions() as session:
                await set_tenant(session, tenant_id)
                valid = set(await self.tickets.still_valid(session, principals))
            for principal in set(principals) - valid:
                for queue in queues[principal]:
                    self.hub.end(queue, REVOKED)
                    ended += 1
        return ended

    async def _guard_streams(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self.check_streams()
            except Exception as exc:  # the next round tries again
                log.warning("stream_guard_failed", error=f"{type(exc).__name__}: {exc}")

    async def start(self) -> None:
        self.listener.start()
        if self.worker_enabled:
            self.worker.start()
        self._guard.start()

    async def stop(self) -> None:
        await self._guard.stop()
        await self.worker.close()
        await self.listener.stop()
        await self.publisher.close()
        sms = self.transports["sms"]
        if isinstance(sms, TwilioSmsTransport):
            await sms.close()
