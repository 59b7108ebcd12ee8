"""Real crashes of the real processes: `pantherahive relay` and `pantherahive worker` run as
subprocesses against a real NATS JetStream server and a real Kafka-protocol broker (Tansu)
and are SIGKILLed while they work; each test proves that at least one kill landed where it
hurts (between publish and mark; in the middle of a fetched batch), then that every event
arrives and its effect is applied exactly once.

Each test gets brokers of its own (a fresh stream, fresh durable consumers and groups),
and the module a database of its own: the session's app runs the platform's consumers
in embedded mode, and their advisory locks would keep `pantherahive worker` from ever
running them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from sqlalchemy import text

from pantherahive.domains.audit.api import ArchiveConfig, ArchiveStore, AuditService
from pantherahive.infra.bus.broker.kafka import KafkaPublisher, KafkaWorker, bootstrap_servers
from pantherahive.infra.bus.broker.nats import SUBJECT_PREFIX, NatsPublisher, NatsWorker, connect
from pantherahive.infra.bus.broker.relay import Publisher, Relay
from pantherahive.infra.bus.broker.worker import BrokerWorker
from pantherahive.infra.bus.codec import decode
from pantherahive.infra.bus.delivery import RetryPolicy
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.db.engine import Database, set_tenant
from pantherahive.infra.db.migrate import upgrade
from tests.infra.bus.brokers import Broker, kafka_broker, nats_broker
from tests.infra.bus.conftest import Effects, Recorder
from tests.infra.bus.test_transports import relay_all
from tests.support.events import adhoc
from tests.support.servers import app_url, create_database, drop_database

STREAM = "PH_KILL_EVENTS"
PANTHERAHIVE = str(Path(sys.executable).with_name("pantherahive"))
BUDGET = 40.0  # seconds any single wait may take before the test fails


@pytest.fixture(params=["nats", "kafka"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    found = nats_broker(tmp_path / "nats") if request.param == "nats" else kafka_broker()
    if found is None:
        pytest.fail(f"no {request.param} broker: install the dev dependencies")
    if not found.controllable:
        pytest.skip("an external broker (NATS_URL/KAFKA_URL) is shared: a fresh one is needed")
    found.start()
    yield found
    found.stop()


@pytest.fixture(scope="module")
def kill_database(pg_server: str) -> Iterator[str]:
    url = asyncio.run(create_database(pg_server))
    upgrade(url)
    yield url
    asyncio.run(drop_database(url))


@pytest.fixture(scope="module")
async def kill_app_db(kill_database: str) -> AsyncIterator[Database]:
    db = Database.connect(app_url(kill_database), pool_size=5)
    yield db
    await db.dispose()


@pytest.fixture(scope="module")
async def kill_owner_db(kill_database: str) -> AsyncIterator[Database]:
    db = Database.connect(kill_database, pool_size=2)
    async with db.sessions() as session, session.begin():
        for statement in EFFECTS_DDL:
            await session.execute(text(statement))
    yield db
    await db.dispose()


EFFECTS_DDL = (
    "CREATE SCHEMA IF NOT EXISTS bus_test",
    "CREATE TABLE IF NOT EXISTS bus_test.effects (seq bigserial PRIMARY KEY, "
    "consumer text NOT NULL, event_id uuid NOT NULL, tenant_id uuid NOT NULL, "
    "type text NOT NULL, setting text)",
    "GRANT USAGE ON SCHEMA bus_test TO pantherahive_app",
    "GRANT SELECT, INSERT ON bus_test.effects TO pantherahive_app",
    "GRANT USAGE ON SEQUENCE bus_test.effects_seq_seq TO pantherahive_app",
)


async def write_events(db: Database, tenant: uuid.UUID, count: int, kind: str
                       ) -> list[uuid.UUID]:
    ids = []
    async with db.sessions() as session, session.begin():
        await set_tenant(session, tenant)
        for n in range(count):
            ids.append(await emit(session, adhoc(kind, {"n": n}), subject_type="thing",
                                  subject_id=n, tenant_id=tenant))
    return ids


@pytest.fixture(autouse=True)
async def _only_this_tests_events_are_unpublished(kill_owner_db: Database) -> None:
    async with kill_owner_db.sessions() as session, session.begin():
        await session.execute(
            text("UPDATE bus.outbox SET published_at = now() WHERE published_at IS NULL")
        )


class Process:
    """One `pantherahive <command>` subprocess at a time, its output kept in a log file."""

    def __init__(self, command: str, env: dict[str, str], log: Path) -> None:
        self.command = command
        self.env = env
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: TextIO | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.proc is None
        self.starts += 1
        self._log = self.log_path.open("a", encoding="utf-8")
        self._log.write(f"\n--- start {self.starts}\n")
        self._log.flush()
        self.proc = subprocess.Popen(
            [PANTHERAHIVE, self.command], env=self.env, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )

    def _reap(self) -> None:
        assert self.proc is not None
        try:
            self.proc.wait(15)
        finally:
            self.proc = None
            if self._log is not None:
                self._log.close()

    def kill(self) -> None:
        """SIGKILL: no handler runs, no connection is closed politely."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._reap()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self) -> str:
        return self.log_path.read_text(encoding="utf-8")[-3000:]


def process_env(broker: Broker, database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PANTHERAHIVE_", "BUS_URL", "REDIS_URL"))}
    env.update({
        "DATABASE_URL": app_url(database_url),
        "BUS_URL": broker.url,
        "PANTHERAHIVE_BUS_STREAM": STREAM,
        "PANTHERAHIVE_BUS_BATCH_SIZE": "200",
        "PANTHERAHIVE_BUS_POLL_INTERVAL_SECONDS": "0.1",
        "PANTHERAHIVE_BUS_ACK_WAIT_SECONDS": "1",
        "PANTHERAHIVE_BUS_MAX_ATTEMPTS": "3",
        "PANTHERAHIVE_BUS_RETRY_BASE_SECONDS": "0.01",
        "PANTHERAHIVE_DATA_DIR": str(tmp_path / "data"),
        "PANTHERAHIVE_LOG_LEVEL": "warning",
        "PANTHERAHIVE_JWT_SECRET": "kill-test-" + "x" * 40,
    })
    return env


async def wait_until(predicate: Callable[[], Awaitable[bool]], what: str,
                     process: Process | None = None, seconds: float = BUDGET,
                     every: float = 0.02) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await predicate():
        if process is not None and process.proc is not None and not process.alive():
            pytest.fail(f"{process.command} exited while waiting for {what}:\n{process.tail()}")
        if loop.time() > deadline:
            tail = process.tail() if process is not None else ""
            pytest.fail(f"timed out waiting for {what}\n{tail}")
        await asyncio.sleep(every)


class Probe:
    """What the broker holds, seen from outside the processes under test."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def count(self) -> int:
        """Messages stored in the stream/topic (Kafka: duplicates included)."""
        if self.broker.kind == "nats":
            nc = await connect(self.broker.url)
            try:
                info = await nc.jetstream().stream_info(STREAM)
                return int(info.state.messages)
            except NotFoundError:
                return 0
            finally:
                await nc.close()
        async with self._kafka() as (consumer, partitions):
            if not partitions:
                return 0
            ends = await consumer.end_offsets(partitions)
            return sum(ends.values())

    async def event_ids(self) -> set[uuid.UUID]:
        """Ids of every event in the stream/topic."""
        if self.broker.kind == "nats":
            return {event_id for _seq, event_id in await self._nats_messages(0)}
        return {event_id for _tp, _offset, event_id in await self._kafka_messages({})}

    async def unacknowledged(self, consumer: str) -> set[uuid.UUID]:
        """Events the named durable consumer / group holds without an acknowledgement:
        NATS, stream sequences above its ack floor up to what it was delivered; Kafka,
        offsets from its committed position to the end of each partition."""
        if self.broker.kind == "nats":
            durable = consumer.replace(".", "_")
            nc = await connect(self.broker.url)
            try:
                try:
                    info = await nc.jetstream().consumer_info(STREAM, durable)
                except NotFoundError:
                    return set()
            finally:
                await nc.close()
            floor, delivered = info.ack_floor.stream_seq, info.delivered.stream_seq
            return {event_id for seq, event_id in await self._nats_messages(floor)
                    if seq <= delivered}
        # The group's committed offsets, read without joining it (no subscription, so no
        # rebalance of the group under test).
        group = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(self.broker.url),
                                 group_id=consumer, enable_auto_commit=False)
        await group.start()
        try:
            await group.topics()
            partitions = [TopicPartition(STREAM, p)
                          for p in sorted(group.partitions_for_topic(STREAM) or ())]
            starts = {}
            for tp in partitions:
                offset = await group.committed(tp)
                starts[tp] = offset if offset is not None and offset >= 0 else 0
        finally:
            await group.stop()
        return {event_id for _tp, _offset, event_id in await self._kafka_messages(starts)}

    async def _nats_messages(self, after_seq: int) -> list[tuple[int, uuid.UUID]]:
        nc = await connect(self.broker.url)
        try:
            js = nc.jetstream()
            sub = await js.pull_subscribe(
                f"{SUBJECT_PREFIX}.>", stream=STREAM,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=after_seq + 1, inactive_threshold=10.0,
                ),
            )
            found: list[tuple[int, uuid.UUID]] = []
            for _ in range(200):  # bounded: 200 fetches of up to 500
                pending = (await sub.consumer_info()).num_pending
                if not pending:
                    break
                for message in await sub.fetch(min(500, pending), timeout=5):
                    found.append((message.metadata.sequence.stream, decode(message.data).id))
            await sub.unsubscribe()
            return found
        finally:
            await nc.close()

    def _kafka(self) -> Any:
        broker = self.broker

        class _Open:
            async def __aenter__(self) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
                self.consumer = AIOKafkaConsumer(
                    bootstrap_servers=bootstrap_servers(broker.url), enable_auto_commit=False
                )
                await self.consumer.start()
                await self.consumer.topics()  # loads the cluster metadata
                ids = self.consumer.partitions_for_topic(STREAM)
                partitions = [TopicPartition(STREAM, p) for p in sorted(ids or ())]
                if partitions:
                    self.consumer.assign(partitions)
                return self.consumer, partitions

            async def __aexit__(self, *exc: object) -> None:
                await self.consumer.stop()

        return _Open()

    async def _kafka_messages(
        self, starts: dict[TopicPartition, int]
    ) -> list[tuple[TopicPartition, int, uuid.UUID]]:
        found: list[tuple[TopicPartition, int, uuid.UUID]] = []
        async with self._kafka() as (consumer, partitions):
            if not partitions:
                return found
            ends = await consumer.end_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, starts.get(tp, 0))
            for _ in range(400):  # bounded
                positions = [await consumer.position(tp) for tp in partitions]
                if all(at >= ends[tp] for at, tp in zip(positions, partitions, strict=True)):
                    break
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                for tp, records in batches.items():
                    for record in records:
                        if record.offset < ends[tp] and record.value:
                            found.append((tp, record.offset, decode(record.value).id))
        return found


async def unpublished(owner_db: Database, tenant: uuid.UUID) -> set[uuid.UUID]:
    async with owner_db.sessions() as session:
        rows = await session.scalars(
            text("SELECT id FROM bus.outbox WHERE tenant_id = :t AND published_at IS NULL"),
            {"t": tenant},
        )
        return set(rows)


async def markers(owner_db: Database, consumer: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    async with owner_db.sessions() as session:
        rows = await session.execute(
            text("SELECT event_id, count(*) AS n FROM bus.processed_events "
                 "WHERE consumer = :c AND event_id = ANY(:ids) GROUP BY event_id"),
            {"c": consumer, "ids": ids},
        )
        return {row.event_id: row.n for row in rows}


@pytest.fixture
async def background() -> AsyncIterator[Callable[[Callable[[asyncio.Event], Awaitable[None]]],
                                                  asyncio.Event]]:
    started: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    def start(factory: Callable[[asyncio.Event], Awaitable[None]]) -> asyncio.Event:
        stopping = asyncio.Event()
        started.append((stopping, asyncio.ensure_future(factory(stopping))))
        return stopping

    yield start
    for stopping, _task in started:
        stopping.set()
    results = await asyncio.wait_for(
        asyncio.gather(*(task for _s, task in started), return_exceptions=True), 30)
    assert not [r for r in results if isinstance(r, Exception)], results


def in_process_worker(broker: Broker, db: Database, recorder: Recorder) -> BrokerWorker[Any, Any]:
    options: dict[str, Any] = {"retry": RetryPolicy(max_attempts=3, base_delay=0.01),
                               "batch_size": 200, "poll_interval": 0.1}
    if broker.kind == "nats":
        return NatsWorker(db, [recorder.spec], url=broker.url, stream=STREAM, ack_wait=1.0,
                          **options)
    return KafkaWorker(db, [recorder.spec], url=broker.url, topic=STREAM, commit_timeout=2.0,
                       **options)


async def test_relay_process_sigkilled_between_publish_and_mark(
    broker: Broker, kill_app_db: Database, kill_owner_db: Database, kill_database: str,
    tmp_path: Path, background: Any,
) -> None:
    app_db, owner_db, database_url = kill_app_db, kill_owner_db, kill_database
    effects = Effects(owner_db)
    recorder = Recorder()
    tenant = uuid.uuid4()
    probe = Probe(broker)
    relay = Process("relay", process_env(broker, database_url, tmp_path), tmp_path / "relay.log")
    written: list[uuid.UUID] = []

    async def write(stopping: asyncio.Event) -> None:
        for _ in range(600):  # bounded; stopped once the kills are done
            if stopping.is_set():
                return
            written.extend(await write_events(app_db, tenant, 10, recorder.happened))
            await asyncio.sleep(0.1)

    stop_writing = asyncio.Event()
    writing = asyncio.ensure_future(write(stop_writing))
    kills = landed = 0
    try:
        while kills < 8 and not (landed and kills >= 2):
            async def backlog() -> bool:
                return len(await unpublished(owner_db, tenant)) >= 150

            await wait_until(backlog, "a backlog of unpublished events")
            before = await probe.count()
            relay.start()

            async def publishing(before: int = before) -> bool:
                return await probe.count() > before

            await wait_until(publishing, "the relay to publish", relay, every=0.01)
            relay.kill()
            kills += 1
            # Published, but the relay died before marking them: in the broker, and still
            # unpublished in the outbox.
            if await probe.event_ids() & await unpublished(owner_db, tenant):
                landed += 1
        stop_writing.set()
        await writing
        assert landed, f"none of {kills} kills landed between publish and mark"

        relay.start()

        async def all_published() -> bool:
            return not await unpublished(owner_db, tenant)

        await wait_until(all_published, "the restarted relay to publish everything", relay)
    finally:
        stop_writing.set()
        await asyncio.gather(writing, return_exceptions=True)
        relay.stop()
    assert await probe.event_ids() >= set(written)

    background(in_process_worker(broker, app_db, recorder).run)

    async def handled_once() -> bool:
        counts = await effects.counts(recorder.name)
        assert all(n == 1 for n in counts.values()), "an effect was applied twice"
        return all(counts.get(event_id) == 1 for event_id in written)

    await wait_until(handled_once, "every event to be handled")
    # One tenant, one writer: its order survived the kills and re-publishes.
    assert [row.event_id for row in await effects.rows(recorder.name)] == written


async def test_worker_process_sigkilled_mid_batch(
    broker: Broker, kill_app_db: Database, kill_owner_db: Database, kill_database: str,
    tmp_path: Path,
) -> None:
    """The real worker runs every consumer of the platform; the audit consumer's markers
    and rows are the effects checked."""
    app_db, owner_db, database_url = kill_app_db, kill_owner_db, kill_database
    tenant = uuid.uuid4()
    kind = f"bt{uuid.uuid4().hex[:10]}.happened"
    ids: list[uuid.UUID] = []
    for _ in range(4):
        ids += await write_events(app_db, tenant, 100, kind)
    publisher = publisher_for_stream(broker)
    try:
        await relay_all(Relay(app_db, publisher, batch_size=500))
    finally:
        await publisher.close()

    probe = Probe(broker)
    worker = Process("worker", process_env(broker, database_url, tmp_path),
                     tmp_path / "worker.log")
    kills = 0
    mid_batch = handled_not_acked = False
    try:
        while kills < 3 and not handled_not_acked:
            before = len(await markers(owner_db, "audit", ids))
            worker.start()

            async def handling(before: int = before) -> bool:
                return len(await markers(owner_db, "audit", ids)) > before + 5

            await wait_until(handling, "the worker to handle events", worker)
            worker.kill()
            kills += 1
            done = set(await markers(owner_db, "audit", ids))
            held = await probe.unacknowledged("audit")
            if held and len(done) < len(ids):
                mid_batch = True  # it died holding a fetched, unfinished batch
            if held & done:
                handled_not_acked = True  # some of it committed but never acknowledged
            if len(done) == len(ids):
                break
        assert mid_batch, f"none of {kills} kills landed in the middle of a batch"
        if broker.kind == "kafka":
            # Offsets are committed once per fetched batch: a kill mid-batch always
            # leaves handled events behind the committed offset.
            assert handled_not_acked

        worker.start()

        async def everything() -> bool:
            audit = await markers(owner_db, "audit", ids)
            notified = await markers(owner_db, "notifications", ids)
            return len(audit) == len(notified) == len(ids)

        await wait_until(everything, "every event to reach every consumer", worker)
    finally:
        worker.stop()

    assert set((await markers(owner_db, "audit", ids)).values()) == {1}
    async with owner_db.sessions() as session:
        recorded = list(await session.scalars(
            text("SELECT id FROM audit.audit_events WHERE tenant_id = :t ORDER BY seq"),
            {"t": tenant},
        ))
    assert sorted(recorded) == sorted(ids)  # each event once in the trail
    async with app_db.sessions() as session, session.begin():
        await set_tenant(session, tenant)
        store = ArchiveStore(ArchiveConfig(url=str(tmp_path / "archive")))
        verified = await AuditService(store).verify_tenant(session, tenant)
    assert (verified.ok, verified.checked) == (True, len(ids))


def publisher_for_stream(broker: Broker) -> Publisher:
    if broker.kind == "nats":
        return NatsPublisher(broker.url, stream=STREAM)
    return KafkaPublisher(broker.url, topic=STREAM)

