"""The delivery worker: sends pending email/SMS deliveries and webhook deliveries, retrying
on the platform's backoff schedule (``core.retry.Backoff``: exponential, with jitter, so
deliveries that failed together do not retry in lock-step) and ending ``failed`` with the
reason — never dropping one.

Work is claimed through a leased ``SKIP LOCKED`` door (migration 0006), so any number of
processes can run a worker. The network call happens outside any transaction: the attempt
is counted first, then the outcome recorded in a second short transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from uuid import UUID

import httpx
from cryptography.fernet import InvalidToken
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.clock import now
from pantherahive.core.retry import Backoff, BackoffState
from pantherahive.domains.identity.api import active_admin_ids
from pantherahive.domains.notifications import catalog
from pantherahive.domains.notifications.background import BackgroundLoop
from pantherahive.domains.notifications.delivery.repository import DeliveryRepository
from pantherahive.domains.notifications.delivery.transports import DeliveryError, Transport
from pantherahive.domains.notifications.inbox.service import Draft, NotificationService
from pantherahive.domains.notifications.metrics import (
    DELIVERY_ATTEMPTS,
    WEBHOOK_DELIVERY_ATTEMPTS,
)
from pantherahive.domains.notifications.realtime.repository import TicketRepository
from pantherahive.domains.notifications.webhooks.egress import pinned_client
from pantherahive.domains.notifications.webhooks.repository import WebhookRepository
from pantherahive.domains.notifications.webhooks.service import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    WebhookService,
    body_of,
    check_url,
    signature_header,
)
from pantherahive.infra.db.engine import Database, set_tenant
from pantherahive.infra.logging import get_logger
from pantherahive.settings import Settings

log = get_logger("pantherahive.notifications.worker")
LEASE_SECONDS = 120
BATCH = 50
PURGE_EVERY_SECONDS = 60.0
ERROR_BACKOFF_MAX_SECONDS = 30.0


class DeliveryWorker:
    def __init__(
        self, *, db: Database, settings: Settings, transports: dict[str, Transport],
        service: NotificationService, webhooks: WebhookService,
        http: httpx.AsyncClient | None = None, send_webhooks: bool = True,
    ) -> None:
        self.db = db
        self.transports = transports
        self.service = service
        self.webhooks = webhooks
        self.max_attempts = settings.delivery_max_attempts
        self.backoff = Backoff(base=settings.delivery_backoff_seconds,
                               maximum=settings.delivery_backoff_max_seconds)
        self.poll = settings.delivery_poll_seconds
        self.disable_after = settings.webhook_disable_after_failures
        # Connections go only to the addresses their own lookup checked (DNS rebinding).
        self.http = http or pinned_client(
            resolver=self._resolve, allow_private=webhooks.allow_private,
            timeout=settings.webhook_timeout_seconds)
        self.send_webhooks = send_webhooks
        self._background = BackgroundLoop(self._loop, "notifications-delivery")
        self._next_purge = 0.0

    async def _resolve(self, host: str, port: int) -> list[str]:
        return await self.webhooks.resolver(host, port)

    def delay(self, attempts: int) -> timedelta:
        """The wait before the next attempt after ``attempts`` failed ones."""
        return timedelta(seconds=self.backoff.delay(attempts))

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._background.start()

    async def stop(self) -> None:
        await self._background.stop()

    async def close(self) -> None:
        await self.stop()
        await self.http.aclose()

    async def _loop(self) -> None:
        # The database lost (every process's worker at once): retry spaced out, with jitter.
        failing = BackoffState(Backoff(base=self.poll, maximum=ERROR_BACKOFF_MAX_SECONDS))
        while True:
            try:
                if time.monotonic() >= self._next_purge:
                    self._next_purge = time.monotonic() + PURGE_EVERY_SECONDS
                    await self.purge_tickets()
                handled = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("delivery_worker_error", error=str(exc))
                await asyncio.sleep(failing.failed())
                continue
            failing.succeeded()
            if handled == 0:
                await asyncio.sleep(self.poll)

    async def run_once(self, *, tenant_id: UUID | None = None) -> int:
        """Send what is due now (one batch of each kind); returns how many were attempted.
        With ``tenant_id``, only that tenant's work (a test or an operator driving one
        tenant, untouched by what other tenants have pending)."""
        async with self.db.sessions() as session:
            if tenant_id is not None:
                await set_tenant(session, tenant_id)
            repo = DeliveryRepository(session)
            channel_work = await repo.claim("claim_deliveries", sorted(self.transports), BATCH,
                                            LEASE_SECONDS, tenant_id=tenant_id)
            hook_work = (
                await repo.claim("claim_webhook_deliveries", [], BATCH, LEASE_SECONDS,
                                 tenant_id=tenant_id)
                if self.send_webhooks else [])
            await session.commit()
        jobs: list[Awaitable[None]] = [self._deliver(t, i) for t, i in channel_work]
        jobs += [self._deliver_webhook(t, i) for t, i in hook_work]
        await asyncio.gather(*jobs)
        return len(jobs)

    async def purge_tickets(self) -> int:
        """Delete expired stream tickets of every tenant (spent ones are deleted when used)."""
        purged = 0
        while True:
            async with self.db.sessions() as session:
                count = await TicketRepository(session).purge_tickets(limit=1000)
                await session.commit()
            purged += count
            if count < 1000:
                return purged

    async def _in_tenant(self, tenant_id: UUID,
                         work: Callable[[AsyncSession], Awaitable[None]]) -> None:
        async with self.db.sessions() as session:
            await set_tenant(session, tenant_id)
            await work(session)
            await session.commit()

    # ---- email / SMS --------------------------------------------------------------------
    async def _deliver(self, tenant_id: UUID, delivery_id: UUID) -> None:
        job: dict[str, object] = {}

        async def begin(session: AsyncSession) -> None:
            row = await DeliveryRepository(session).delivery_for_update(delivery_id)
            if row is None or row.status != "pending" or row.payload is None:
                return
            row.attempts += 1
            job.update(channel=row.channel, recipient=row.recipient, payload=row.payload,
                       attempts=row.attempts)

        await self._in_tenant(tenant_id, begin)
        if not job:
            return
        error: DeliveryError | None = None
        try:
            await self.transports[str(job["channel"])].send(
                str(job["recipient"]), job["payload"])  # type: ignore[arg-type]
        except DeliveryError as exc:
            error = exc
        except Exception as exc:
            error = DeliveryError(f"{type(exc).__name__}: {exc}")

        async def finish(session: AsyncSession) -> None:
            row = await DeliveryRepository(session).delivery_for_update(delivery_id)
            if row is None:
                return
            if error is None:
                row.status, row.sent_at, row.payload, row.last_error = "sent", now(), None, None
                outcome.append("sent")
            elif error.permanent or row.attempts >= self.max_attempts:
                row.status, row.payload, row.last_error = "failed", None, error.reason
                outcome.append("failed")
            else:
                row.last_error = error.reason
                row.next_attempt_at = now() + self.delay(row.attempts)
                outcome.append("retried")

        outcome: list[str] = []
        await self._in_tenant(tenant_id, finish)
        if outcome:
            DELIVERY_ATTEMPTS.labels(str(job["channel"]), outcome[0]).inc()
        log.info("delivery_attempt", channel=job["channel"], delivery_id=str(delivery_id),
                 ok=error is None, error=error.reason if error else None)

    # ---- webhooks -----------------------------------------------------------------------
    async def _deliver_webhook(self, tenant_id: UUID, delivery_id: UUID) -> None:
        job: dict[str, object] = {}

        async def begin(session: AsyncSession) -> None:
            repo = WebhookRepository(session)
            row = await repo.webhook_delivery(delivery_id, for_update=True)
            if row is None or row.status != "pending":
                return
            hook = await repo.get_webhook(row.webhook_id)
            if hook is None or not hook.enabled:
                row.status, row.last_error = "failed", "the webhook is disabled"
                return
            row.attempts += 1
            try:
                secrets = self.webhooks.signing_secrets(hook, now())
            except InvalidToken:
                # The key material changed since the secret was stored: this delivery can
                # never be signed. Final, with the reason (rotate the secret to go on).
                row.status, row.next_attempt_at = "failed", now()
                row.last_error = ("the webhook's secret cannot be decrypted (the key "
                                  "material changed?); rotate the secret")
                unsigned.append(row.id)
                return
            job.update(url=hook.url, payload=row.payload, event_id=str(row.event_id),
                       secrets=secrets)

        unsigned: list[UUID] = []
        await self._in_tenant(tenant_id, begin)
        if unsigned:
            WEBHOOK_DELIVERY_ATTEMPTS.labels("failed").inc()
            log.warning("webhook_secret_undecryptable", delivery_id=str(delivery_id))
        if not job:
            return
        status: int | None = None
        error: DeliveryError | None = None
        started = time.perf_counter()
        try:
            await check_url(str(job["url"]), allow_private=self.webhooks.allow_private,
                            resolver=self.webhooks.resolver)
            body = body_of(job["payload"])  # type: ignore[arg-type]
            secrets: list[str] = job["secrets"]  # type: ignore[assignment]
            stamp = int(now().timestamp())
            response = await self.http.post(str(job["url"]), content=body, headers={
                "Content-Type": "application/json",
                "User-Agent": "PantheraHive-Webhooks/1",
                EVENT_ID_HEADER: str(job["event_id"]),
                SIGNATURE_HEADER: signature_header(secrets, stamp, body),
            })
            status = response.status_code
            if not 200 <= status < 300:
                error = DeliveryError(f"the receiver answered {status}")
        except DeliveryError as exc:
            error = exc
        except httpx.TimeoutException:
            error = DeliveryError("the receiver timed out")
        except Exception as exc:
            error = DeliveryError(f"{type(exc).__name__}: {exc}"[:500],
                                  permanent=type(exc).__name__ == "UnsafeWebhookUrl")
        duration = int((time.perf_counter() - started) * 1000)
        disabled: list[UUID] = []

        async def finish(session: AsyncSession) -> None:
            repo = WebhookRepository(session)
            row = await repo.webhook_delivery(delivery_id, for_update=True)
            if row is None:
                return
            row.response_status, row.duration_ms = status, duration
            hook = await repo.get_webhook(row.webhook_id, for_update=True)
            if error is None:
                row.status, row.sent_at, row.last_error = "sent", now(), None
                outcome.append("sent")
                if hook is not None:
                    hook.consecutive_failures = 0
                return
            row.last_error = error.reason
            if not error.permanent and row.attempts < self.max_attempts:
                row.next_attempt_at = now() + self.delay(row.attempts)
                outcome.append("retried")
                return
            row.status = "failed"
            outcome.append("failed")
            if hook is None or not hook.enabled:
                return
            hook.consecutive_failures += 1
            if hook.consecutive_failures >= self.disable_after:
                hook.enabled = False
                hook.disabled_reason = (
                    f"{hook.consecutive_failures} deliveries in a row failed; last: {error.reason}")
                hook.updated_at = now()
                disabled.append(hook.id)
                await self._notify_disabled(session, tenant_id, hook.id, hook.url,
                                            hook.disabled_reason)

        outcome: list[str] = []
        await self._in_tenant(tenant_id, finish)
        if outcome:
            WEBHOOK_DELIVERY_ATTEMPTS.labels(outcome[0]).inc()
        if disabled:
            log.warning("webhook_disabled", webhook_id=str(disabled[0]))

    async def _notify_disabled(self, session: AsyncSession, tenant_id: UUID, webhook_id: UUID,
                               url: str, reason: str) -> None:
        admins = await active_admin_ids(session)
        await self.service.notify(session, tenant_id, [Draft(
            user_id=admin, type=catalog.WEBHOOK_DISABLED, title="A webhook was disabled",
            body=f"Deliveries to {url} kept failing, so the webhook was disabled: {reason}",
            data={"webhookId": str(webhook_id), "url": url},
        ) for admin in sorted(admins)])

