"""From ``BUS_URL`` to a running relay or worker: the one place that picks NATS or Kafka
by the URL's scheme. Their modules are imported only when chosen, so a deployment needs
only its own broker's client library; neither imports this module back."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pantherahive.infra.bus.broker.relay import Publisher, Relay
from pantherahive.infra.bus.broker.worker import BrokerWorker
from pantherahive.infra.bus.consumer import ConsumerSpec
from pantherahive.infra.bus.from_settings import pruner_from_settings, retry_policy
from pantherahive.infra.db.engine import Database
from pantherahive.settings import Settings


def _scheme(bus_url: str) -> str:
    return bus_url.split("://", 1)[0].lower()


def open_publisher(settings: Settings) -> Publisher:
    """The publisher of ``BUS_URL``'s broker (its client library is imported only then)."""
    scheme = _scheme(settings.bus_url)
    if scheme in {"nats", "tls"}:
        from pantherahive.infra.bus.broker.nats import NatsPublisher

        return NatsPublisher(
            settings.bus_url, stream=settings.bus_stream, timeout=settings.bus_ack_wait_seconds
        )
    if scheme == "kafka":
        from pantherahive.infra.bus.broker.kafka import KafkaPublisher

        return KafkaPublisher(
            settings.bus_url, topic=settings.bus_stream, timeout=settings.bus_ack_wait_seconds
        )
    raise ValueError(f"BUS_URL must be embedded, nats://… or kafka://…, not {settings.bus_url}")


def open_worker(
    db: Database, settings: Settings, consumers: Sequence[ConsumerSpec]
) -> BrokerWorker[object, object]:
    """The worker of ``BUS_URL``'s broker, running ``consumers``."""
    scheme = _scheme(settings.bus_url)
    retry = retry_policy(settings)
    # With a broker, an outbox row may go once the relay published it.
    pruner = pruner_from_settings(db, settings, None)
    worker: BrokerWorker[object, object]
    if scheme in {"nats", "tls"}:
        from pantherahive.infra.bus.broker.nats import NatsWorker

        worker = NatsWorker(  # type: ignore[assignment]
            db, consumers, url=settings.bus_url, stream=settings.bus_stream, retry=retry,
            ack_wait=settings.bus_ack_wait_seconds, batch_size=settings.bus_batch_size,
            poll_interval=settings.bus_poll_interval_seconds, pruner=pruner,
        )
        return worker
    if scheme == "kafka":
        from pantherahive.infra.bus.broker.kafka import KafkaWorker

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
