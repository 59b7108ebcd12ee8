"""Broker transports behind one interface: a ``Publisher`` the relay hands outbox batches
to, and a ``BrokerWorker`` that runs consumers on a broker's durable subscriptions.

Delivery is at-least-once on both sides; the relay marks ``published_at`` only after the
broker acknowledged, and consumers commit a ``bus.processed_events`` marker with their
effects, so a redelivered event is acknowledged without being handled again.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from pantherahive.infra.bus import store
from pantherahive.infra.bus.codec import decode
from pantherahive.infra.bus.consumer import ConsumerSpec, Event
from pantherahive.infra.bus.control import ControlConnection
from pantherahive.infra.bus.metrics import CONSUMER_LAG, EVENTS_CONSUMED, EVENTS_PUBLISHED
from pantherahive.infra.bus.retention import Pruner
from pantherahive.infra.bus.runner import ConsumerRunner, Outcome, RetryPolicy
from pantherahive.infra.db.engine import Database
from pantherahive.infra.logging import get_logger
from pantherahive.settings import Settings

log = get_logger(__name__)
SUBJECT_PREFIX = "pantherahive.events"
M = TypeVar("M")
S = TypeVar("S")


class Publisher(Protocol):
    name: str

    async def publish(self, events: Sequence[Event]) -> None:
        """Return only once the broker acknowledged every event; raise otherwise."""

    async def close(self) -> None: ...


async def wait_any(seconds: float, *events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class Relay:
    """Outbox → broker. Several relays may run; an advisory lock lets one work at a time."""

    def __init__(
        self, db: Database, publisher: Publisher, *, batch_size: int = 500,
        poll_interval: float = 1.0,
    ) -> None:
        self.db = db
        self.publisher = publisher
        self.batch_size = batch_size
        self.poll_interval = poll_interval

    async def unpublished(self) -> list[Event]:
        async with self.db.sessions() as session:
            return await store.read_unpublished(session, self.batch_size)

    async def mark(self, events: Sequence[Event]) -> int:
        positions = [event.position for event in events if event.position is not None]
        async with self.db.sessions() as session, session.begin():
            return await store.mark_published(session, positions)

    async def relay_once(self) -> int:
        events = await self.unpublished()
        if not events:
            return 0
        await self.publisher.publish(events)
        await self.mark(events)
        EVENTS_PUBLISHED.labels(self.publisher.name).inc(len(events))
        return len(events)

    async def run(self, stopping: asyncio.Event) -> None:
        wake = asyncio.Event()
        backoff = 0.2
        while not stopping.is_set():
            try:
                async with ControlConnection(self.db, lambda _types: wake.set()) as control:
                    while not stopping.is_set() and not await control.try_lock("relay"):
                        await wait_any(5.0, stopping)
                    while not stopping.is_set() and control.alive():
                        wake.clear()
                        try:
                            if await self.relay_once() >= self.batch_size:
                                continue
                            backoff = 0.2
                        except Exception as exc:
                            log.warning("relay could not publish", error=repr(exc))
                            await wait_any(backoff, stopping)
                            backoff = min(backoff * 2, 5.0)
                            continue
                        await wait_any(self.poll_interval, wake, stopping)
            except Exception as exc:
                log.warning("relay lost its database connection", error=repr(exc))
                await wait_any(backoff, stopping)
                backoff = min(backoff * 2, 5.0)


class BrokerWorker(abc.ABC, Generic[S, M]):
    """Runs consumers on a broker: each consumer is one durable subscription (S) whose
    messages (M) are handled in order and acknowledged after the handler's commit."""

    def __init__(
        self,
        db: Database,
        consumers: Sequence[ConsumerSpec],
        *,
        retry: RetryPolicy,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        lease_retry: float = 5.0,
        pruner: Pruner | None = None,
    ) -> None:
        self.db = db
        self.consumers = list(consumers)
        self.retry = retry
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.lease_retry = lease_retry
        self.pruner = pruner

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
        """Run every consumer whose lock this process wins until ``stopping`` is set.

        Leadership lives on one control connection. Its locks are taken one after the
        other (one connection runs one query at a time), retried every ``lease_retry``
        seconds for consumers another process runs, and the connection is pinged as often:
        when it dies, its locks are gone (another process may take them), so this
        process's consumers stop — after the event in hand — and it starts over.
        """
        backoff = 0.5
        while not stopping.is_set():
            halt = asyncio.Event()
            tasks: dict[str, asyncio.Task[None]] = {}
            try:
                async with ControlConnection(self.db) as control:
                    backoff = 0.5
                    try:
                        while not stopping.is_set() and control.alive():
                            for spec in self.consumers:
                                if spec.name not in tasks and await control.try_lock(
                                    f"consumer:{spec.name}"
                                ):
                                    tasks[spec.name] = asyncio.create_task(
                                        self.consume(spec, halt), name=spec.name
                                    )
                            if self.pruner is not None:
                                await self.pruner.tick(control)
                            await self._wait(stopping, tasks)
                            await control.ping()
                    finally:
                        # Consumers finish their event while the locks are still held.
                        halt.set()
                        await asyncio.gather(*tasks.values(), return_exceptions=True)
            except Exception as exc:
                log.warning("broker worker lost its control connection; its consumers "
                            "stopped", error=repr(exc))
            if not stopping.is_set():
                await wait_any(backoff, stopping)
                backoff = min(backoff * 2, 30.0)

    async def _wait(self, stopping: asyncio.Event, tasks: dict[str, asyncio.Task[None]]) -> None:
        """``lease_retry`` seconds, or less if stopping or if a consumer task ended: one
        that died of an exception is restarted on the next round; one that died of anything
        else (the process going down) takes the worker with it."""
        waiter = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait([waiter, *tasks.values()], timeout=self.lease_retry,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        for name, task in list(tasks.items()):
            if not task.done():
                continue
            del tasks[name]
            error = None if task.cancelled() else task.exception()
            if error is not None and not isinstance(error, Exception):
                raise error
            if error is not None:
                log.error("broker consumer died; restarting it", consumer=name,
                          error=repr(error))

    async def consume(self, spec: ConsumerSpec, stopping: asyncio.Event) -> None:
        runner = ConsumerRunner(self.db, spec, self.retry, stopping)
        backoff = 0.2
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
                    backoff = 0.2
                except Exception as exc:
                    # Start over with a fresh subscription: unacknowledged messages come
                    # again, and the processed markers make that harmless.
                    log.warning("broker consumer failed", consumer=spec.name, error=repr(exc))
                    await self._close_quietly(subscription)
                    subscription = None
                    await wait_any(backoff, stopping)
                    backoff = min(backoff * 2, 5.0)
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
            parked = await store.park_malformed(
                session, runner.name, payload, store.describe_error(exc)
            )
        EVENTS_CONSUMED.labels(runner.name, Outcome.PARKED).inc()
        log.error("malformed message parked in dead letters", consumer=runner.name,
                  dead_letter=parked, bytes=len(payload), error=repr(exc))


def _scheme(bus_url: str) -> str:
    return bus_url.split("://", 1)[0].lower()


def open_publisher(settings: Settings) -> Publisher:
    scheme = _scheme(settings.bus_url)
    if scheme in {"nats", "tls"}:
        from pantherahive.infra.bus.nats_transport import NatsPublisher

        return NatsPublisher(
            settings.bus_url, stream=settings.bus_stream, timeout=settings.bus_ack_wait_seconds
        )
    if scheme == "kafka":
        from pantherahive.infra.bus.kafka_transport import KafkaPublisher

        return KafkaPublisher(
            settings.bus_url, topic=settings.bus_stream, timeout=settings.bus_ack_wait_seconds
        )
    raise ValueError(f"BUS_URL must be embedded, nats://… or kafka://…, not {settings.bus_url}")


def open_worker(
    db: Database, settings: Settings, consumers: Sequence[ConsumerSpec]
) -> BrokerWorker[object, object]:
    from pantherahive.infra.bus.runtime import pruner_from_settings, retry_policy

    scheme = _scheme(settings.bus_url)
    retry = retry_policy(settings)
    # With a broker, an outbox row may go once the relay published it.
    pruner = pruner_from_settings(db, settings, None)
    worker: BrokerWorker[object, object]
    if scheme in {"nats", "tls"}:
        from pantherahive.infra.bus.nats_transport import NatsWorker

        worker = NatsWorker(  # type: ignore[assignment]
            db, consumers, url=settings.bus_url, stream=settings.bus_stream, retry=retry,
            ack_wait=settings.bus_ack_wait_seconds, batch_size=settings.bus_batch_size,
            poll_interval=settings.bus_poll_interval_seconds, pruner=pruner,
        )
        return worker
    if scheme == "kafka":
        from pantherahive.infra.bus.kafka_transport import KafkaWorker

        worker = KafkaWorker(  # type: ignore[assignment]
            db, consumers, url=settings.bus_url, topic=settings.bus_stream, retry=retry,
            batch_size=settings.bus_batch_size, poll_interval=settings.bus_poll_interval_seconds,
            commit_timeout=settings.bus_ack_wait_seconds, pruner=pruner,
        )
        return worker
    raise ValueError(f"BUS_URL must be nats://… or kafka://… for a worker, not {settings.bus_url}")


async def run_relay(db: Database, settings: Settings, stopping: asyncio.Event) -> None:
    publisher = open_publisher(settings)
    try:
        await Relay(
            db, publisher, batch_size=settings.bus_batch_size,
            poll_interval=settings.bus_poll_interval_seconds,
        ).run(stopping)
    finally:
        await publisher.close()


async def run_worker(
    db: Database, settings: Settings, consumers: Sequence[ConsumerSpec], stopping: asyncio.Event
) -> None:
    await open_worker(db, settings, consumers).run(stopping)
