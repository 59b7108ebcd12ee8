"""NATS JetStream: the relay publishes with ``Nats-Msg-Id`` = event id (JetStream drops a
re-publish inside its duplicate window), consumers are durable pull consumers acked after
the handler's transaction commits."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Unpack

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import BadRequestError

from pantherahive.infra.bus.broker.worker import BrokerWorker
from pantherahive.infra.bus.codec import encode, group_by_tenant, subject_for
from pantherahive.infra.bus.consumer import ConsumerSpec, Event
from pantherahive.infra.bus.host import HostOptions
from pantherahive.infra.db.engine import Database

SUBJECT_PREFIX = "pantherahive.events"
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]")


def durable_name(consumer: str) -> str:
    return _NOT_NAME.sub("_", consumer)


async def connect(url: str) -> Client:
    return await nats.connect(
        url, max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=2,
        name="pantherahive",
    )


async def ensure_stream(js: JetStreamContext, stream: str) -> None:
    try:
        await js.add_stream(StreamConfig(name=stream, subjects=[f"{SUBJECT_PREFIX}.>"]))
    except BadRequestError:
        # Already there with another config (an operator tuned it): keep theirs.
        await js.stream_info(stream)


class NatsPublisher:
    name = "nats"

    def __init__(self, url: str, *, stream: str, timeout: float = 5.0) -> None:
        self.url = url
        self.stream = stream
        self.timeout = timeout
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    async def _jetstream(self) -> JetStreamContext:
        if self._js is None or self._nc is None or self._nc.is_closed:
            self._nc = await connect(self.url)
            self._js = self._nc.jetstream()
            await ensure_stream(self._js, self.stream)
        return self._js

    async def publish(self, events: Sequence[Event]) -> None:
        js = await self._jetstream()

        async def one_tenant(batch: list[Event]) -> None:
            for event in batch:  # in order: a tenant's events stay ordered in the stream
                await js.publish(
                    subject_for(SUBJECT_PREFIX, event), encode(event), timeout=self.timeout,
                    stream=self.stream, headers={"Nats-Msg-Id": str(event.id)},
                )

        await asyncio.gather(*(one_tenant(batch) for batch in group_by_tenant(events)))

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()
        self._nc = self._js = None


@dataclass
class NatsSubscription:
    sub: JetStreamContext.PullSubscription


class NatsWorker(BrokerWorker[NatsSubscription, Msg]):
    def __init__(
        self,
        db: Database,
        consumers: Sequence[ConsumerSpec],
        *,
        url: str,
        stream: str,
        ack_wait: float = 30.0,
        **options: Unpack[HostOptions],
    ) -> None:
        super().__init__(db, consumers, **options)
        self.url = url
        self.stream = stream
        self.ack_wait = ack_wait
        self._nc: Client | None = None
        self._lock = asyncio.Lock()

    async def _jetstream(self) -> JetStreamContext:
        async with self._lock:
            if self._nc is None or self._nc.is_closed:
                self._nc = await connect(self.url)
                await ensure_stream(self._nc.jetstream(), self.stream)
            return self._nc.jetstream()

    async def subscribe(self, spec: ConsumerSpec) -> NatsSubscription:
        js = await self._jetstream()
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_deliver=-1,
            max_ack_pending=max(self.batch_size * 2, 1000),
        )
        sub = await js.pull_subscribe(
            f"{SUBJECT_PREFIX}.>", durable=durable_name(spec.name), stream=self.stream,
            config=config,
        )
        return NatsSubscription(sub)

    async def fetch(self, subscription: NatsSubscription) -> list[Msg]:
        try:
            return await subscription.sub.fetch(self.batch_size, timeout=self.poll_interval)
        except NatsTimeout:
            return []

    def payload(self, message: Msg) -> bytes:
        return message.data

    async def ack(self, subscription: NatsSubscription, message: Msg) -> None:
        await message.ack()

    async def pending(self, subscription: NatsSubscription) -> int:
        info = await subscription.sub.consumer_info()
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def close_subscription(self, subscription: NatsSubscription) -> None:
        await _quietly(subscription.sub.unsubscribe())

    async def run(self, stopping: asyncio.Event) -> None:
        try:
            await super().run(stopping)
        finally:
            if self._nc is not None and not self._nc.is_closed:
                await _quietly(self._nc.close())


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception:
        return
