"""Runs consumers on a broker's durable subscriptions: the base that the NATS and Kafka
workers fill in (subscribe, fetch, acknowledge).

Delivery is at-least-once: consumers commit a ``bus.processed_events`` marker with their
effects, so a redelivered event is acknowledged without being handled again.
"""

from __future__ import annotations

import abc
import asyncio
from functools import partial
from typing import Generic, TypeVar

from pantherahive.core.retry import Backoff, BackoffState
from pantherahive.infra.bus import sql
from pantherahive.infra.bus.codec import decode
from pantherahive.infra.bus.consumer import ConsumerSpec
from pantherahive.infra.bus.delivery import ConsumerRunner, Outcome, describe_error
from pantherahive.infra.bus.host import ConsumerHost
from pantherahive.infra.bus.leadership import Leadership, Role
from pantherahive.infra.bus.metrics import CONSUMER_LAG, EVENTS_CONSUMED
from pantherahive.infra.bus.waiting import wait_any
from pantherahive.infra.logging import get_logger

log = get_logger(__name__)
M = TypeVar("M")
S = TypeVar("S")
# A consumer that lost its subscription resubscribes on this jittered schedule, so the
# workers that lost one broker together do not hit it together when it is back.
RESUBSCRIBE = Backoff(base=0.2, maximum=5.0)


class BrokerWorker(ConsumerHost, abc.ABC, Generic[S, M]):
    """Runs consumers on a broker: each consumer is one durable subscription (S) whose
    messages (M) are handled in order and acknowledged after the handler's commit."""

    default_batch_size = 100

    @abc.abstractmethod
    async def subscribe(self, spec: ConsumerSpec) -> S: ...

    @abc.abstractmethod
    async def fetch(self, subscription: S) -> list[M]: ...

    @abc.abstractmethod
    def payload(self, message: M) -> bytes: ...

    @abc.abstractmethod
    async def ack(self, subscription: S, message: M) -> None: ...

    @abc.abstractmethod
    async def close_subscription(self, subscription: S) -> None: ...

    async def flush(self, subscription: S) -> None:
        """Make the acknowledgements of a fetched batch durable (default: ``ack`` did)."""
        return None

    @abc.abstractmethod
    async def pending(self, subscription: S) -> int:
        """Messages of the subscription not acknowledged yet (for the lag gauge)."""

    async def run(self, stopping: asyncio.Event) -> None:
        """Run every consumer whose lock this process wins until ``stopping`` is set
        (``Leadership``: when the control connection dies, so do its locks, and this
        process's consumers stop after the message in hand)."""
        roles = [Role(spec.name, f"consumer:{spec.name}", partial(self.consume, spec))
                 for spec in self.consumers]
        await Leadership(self.db, roles, name="broker-worker", lease_retry=self.lease_retry,
                         pruner=self.pruner).run(stopping)

    async def consume(self, spec: ConsumerSpec, stopping: asyncio.Event) -> None:
        runner = ConsumerRunner(self.db, spec, self.retry, stopping)
        backoff = BackoffState(RESUBSCRIBE)
        subscription: S | None = None
        try:
            while not stopping.is_set():
                try:
                    if subscription is None:
                        subscription = await self.subscribe(spec)
                    messages = await self.fetch(subscription)
                    for message in messages:
                        if stopping.is_set():
                            break
                        if not await self.handle(runner, subscription, message):
                            break
                    await self.flush(subscription)
                    if len(messages) < self.batch_size:
                        CONSUMER_LAG.labels(spec.name).set(await self.pending(subscription))
                    backoff.succeeded()
                except Exception as exc:
                    # Start over with a fresh subscription: unacknowledged messages come
                    # again, and the processed markers make that harmless.
                    log.warning("broker consumer failed", consumer=spec.name, error=repr(exc))
                    await self._close_quietly(subscription)
                    subscription = None
                    await wait_any(backoff.failed(), stopping)
        finally:
            await self._close_quietly(subscription)

    async def _close_quietly(self, subscription: S | None) -> None:
        if subscription is None:
            return
        try:
            await asyncio.wait_for(self.close_subscription(subscription), 10)
        except Exception as exc:
            log.warning("closing a subscription failed", error=repr(exc))

    async def handle(self, runner: ConsumerRunner, subscription: S, message: M) -> bool:
        """Deliver one message; False when stopping left it unacknowledged (redelivered)."""
        payload = self.payload(message)
        try:
            event = decode(payload)
        except Exception as exc:
            # Not an event at all: redelivering it would stall this consumer for ever
            # (unlimited redelivery). Park the bytes with the error, then acknowledge.
            await self._park_malformed(runner, payload, exc)
        else:
            if runner.spec.wants(event.type) and await runner.deliver(event) is Outcome.STOPPED:
                return False
        await self.ack(subscription, message)
        return True

    async def _park_malformed(
        self, runner: ConsumerRunner, payload: bytes, exc: Exception
    ) -> None:
        async with self.db.sessions() as session, session.begin():
            parked = await sql.park_malformed(session, runner.name, payload, describe_error(exc))
        EVENTS_CONSUMED.labels(runner.name, Outcome.PARKED).inc()
        log.error("malformed message parked in dead letters", consumer=runner.name,
                  dead_letter=parked, bytes=len(payload), error=repr(exc))
