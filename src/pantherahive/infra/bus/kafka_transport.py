"""Kafka (aiokafka): key = tenant id, so one tenant's events share a partition and stay in
order; an idempotent producer where the broker supports it; one consumer group per
consumer, offsets committed after the handler's transaction commits."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from pantherahive.infra.bus.codec import encode
from pantherahive.infra.bus.consumer import ConsumerSpec, Event
from pantherahive.infra.bus.runner import RetryPolicy
from pantherahive.infra.bus.transports import BrokerWorker
from pantherahive.infra.db.engine import Database


def bootstrap_servers(url: str) -> str:
    """``kafka://host:port,host:port`` → ``host:port,host:port``."""
    return url.split("://", 1)[1].split("/", 1)[0]


async def ensure_topic(servers: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
        )
    except TopicAlreadyExistsError:
        return
    finally:
        await admin.close()


class KafkaPublisher:
    name = "kafka"

    def __init__(
        self, url: str, *, topic: str, partitions: int = 3, idempotent: bool = True
    ) -> None:
        self.servers = bootstrap_servers(url)
        self.topic = topic
        self.partitions = partitions
        self.idempotent = idempotent
        self._producer: AIOKafkaProducer | None = None

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            await ensure_topic(self.servers, self.topic, self.partitions)
            producer = AIOKafkaProducer(
                bootstrap_servers=self.servers, acks="all",
                enable_idempotence=self.idempotent, request_timeout_ms=10_000,
            )
            try:
                await producer.start()
            except Exception:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def publish(self, events: Sequence[Event]) -> None:
        producer = await self._started()
        try:
            futures = [
                await producer.send(
                    self.topic, encode(event), key=str(event.tenant_id).encode(),
                    headers=[("event-id", str(event.id).encode())],
                )
                for event in events
            ]
            await asyncio.gather(*futures)
        except Exception:
            # A broken producer is rebuilt on the next batch (the broker may have restarted).
            await self.close()
            raise

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()


@dataclass
class KafkaSubscription:
    consumer: AIOKafkaConsumer
    buffered: list[Any] = field(default_factory=list)


class KafkaWorker(BrokerWorker[KafkaSubscription, ConsumerRecord[bytes, bytes]]):
    def __init__(
        self,
        db: Database,
        consumers: Sequence[ConsumerSpec],
        *,
        url: str,
        topic: str,
        retry: RetryPolicy,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        partitions: int = 3,
    ) -> None:
        super().__init__(db, consumers, retry=retry, batch_size=batch_size,
                         poll_interval=poll_interval)
        self.servers = bootstrap_servers(url)
        self.topic = topic
        self.partitions = partitions

    async def subscribe(self, spec: ConsumerSpec) -> KafkaSubscription:
        await ensure_topic(self.servers, self.topic, self.partitions)
        consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.servers, group_id=spec.name,
            enable_auto_commit=False, auto_offset_reset="earliest",
        )
        try:
            await consumer.start()
        except Exception:
            await consumer.stop()
            raise
        return KafkaSubscription(consumer)

    async def fetch(self, subscription: KafkaSubscription) -> list[ConsumerRecord[bytes, bytes]]:
        batches = await subscription.consumer.getmany(
            timeout_ms=int(self.poll_interval * 1000), max_records=self.batch_size
        )
        return [record for records in batches.values() for record in records]

    def payload(self, message: ConsumerRecord[bytes, bytes]) -> bytes:
        value = message.value
        if not isinstance(value, bytes):
            raise ValueError("a Kafka record without a value is not an event")
        return value

    async def ack(
        self, subscription: KafkaSubscription, message: ConsumerRecord[bytes, bytes]
    ) -> None:
        partition = TopicPartition(message.topic, message.partition)
        await subscription.consumer.commit({partition: OffsetAndMetadata(message.offset + 1, "")})

    async def close_subscription(self, subscription: KafkaSubscription) -> None:
        await subscription.consumer.stop()
