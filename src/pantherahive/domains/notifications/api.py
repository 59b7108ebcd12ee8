"""Notifications' public face. Nothing imports notifications but the composition root
(``main.py``), which builds this runtime: the service, the account-message sender it hands
to identity, the real-time hub and listener, and the delivery worker."""

from __future__ import annotations

from pantherahive.domains.notifications import handlers
from pantherahive.domains.notifications.realtime import Hub, Listener, Publisher
from pantherahive.domains.notifications.sender import NotificationSender
from pantherahive.domains.notifications.service import NotificationService
from pantherahive.domains.notifications.transports import (
    LogTransport,
    SmtpTransport,
    Transport,
    TwilioSmsTransport,
)
from pantherahive.domains.notifications.webhooks import WebhookService
from pantherahive.domains.notifications.worker import DeliveryWorker
from pantherahive.infra.db.engine import Database
from pantherahive.settings import Settings

__all__ = ["CONSUMERS", "NotificationSender", "NotificationsRuntime"]

CONSUMERS = handlers.CONSUMERS


class NotificationsRuntime:
    def __init__(self, settings: Settings, db: Database, *, key_material: str) -> None:
        self.db = db
        self.hub = Hub()
        self.publisher = Publisher(settings.redis_url)
        self.service = NotificationService(publisher=self.publisher,
                                           base_url=settings.app_base_url)
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
        handlers.configure(self.service)

    async def start(self) -> None:
        self.listener.start()
        if self.worker_enabled:
            self.worker.start()

    async def stop(self) -> None:
        await self.worker.close()
        await self.listener.stop()
        await self.publisher.close()
        sms = self.transports["sms"]
        if isinstance(sms, TwilioSmsTransport):
            await sms.close()
