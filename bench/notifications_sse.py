"""Event → SSE client latency and memory per idle SSE connection (issue 5's target:
p99 under 100 ms at 200 notifications/s to 1,000 open connections on one API process).

    .venv/bin/python -m bench.notifications_sse [--users 1000] [--rate 200] [--duration 20]
    .venv/bin/python -m bench.notifications_sse --direct   # the real-time layer alone

One API process (`pantherahive serve`, embedded bus: consumers in the process) on a real
PostgreSQL; this process opens one SSE connection per user over loopback, records the API
process's RSS before and after, then writes ``project.member_added`` events into the
outbox (as the database owner, autocommit) at the given rate, each naming one user and
carrying its send time. Latency = client receipt - event commit request, on one clock.
The event goes through the whole path: outbox NOTIFY → consumer → notification row +
delivery row + pg_notify → listener → hub → SSE frame.

Every notification carries its number, so each one is either received (its latency
counts) or **lost** (not received within ``--grace`` seconds after the last send). Lost
ones count as infinitely late in the percentiles: a p99 is only a number if at most 1 %
was lost, and ``met`` needs zero losses, the achieved rate within 5 % of the asked one,
and p99 under 100 ms. Results go to ``bench/results/notifications-sse-<UTC>[-direct]
.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.db import app_login, connect, provision
from bench.processes import start_platform, tree_cpu_seconds
from bench.report import git, machine, versions
from pantherahive.infra.db.migrate import upgrade

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_P99_MS = 100.0

PASSWORD = "bench-password-1"


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (uvicorn may fork)."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    for p in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


async def seed(base: str, users: int) -> tuple[str, str, list[tuple[str, str]]]:
    """A tenant, its ADMIN and ``users`` logged-in members: (tenant, admin, [(id, token)])."""
    slug = "sse-" + uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        created = (await http.post("/v1/tenants", json={"name": slug, "slug": slug, "admin": {
            "username": "admin", "password": PASSWORD, "email": f"admin@{slug}.example"}})).json()
        admin = {"Authorization": f"Bearer {created['accessToken']}"}
        gate = asyncio.Semaphore(16)

        async def one(i: int) -> tuple[str, str]:
            async with gate:
                name = f"member{i:05d}"
                user = (await http.post("/v1/users", headers=admin, json={
                    "username": name, "password": PASSWORD, "role": "MEMBER"}))
                assert user.status_code == 201, user.text
                user = user.json()
                login = (await http.post("/v1/auth/login", json={
                    "tenant": slug, "login": name, "password": PASSWORD})).json()
                return user["id"], login["accessToken"]

        members = await asyncio.gather(*(one(i) for i in range(users)))
    return created["tenant"]["id"], created["user"]["id"], list(members)


class Client:
    """One raw SSE connection (a few KiB here, so 1,000 fit in this process easily).
    Records the arrival time of each numbered bench notification it sees."""

    def __init__(self, port: int, token: str, arrivals: dict[int, float],
                 duplicates: list[int]) -> None:
        self.port, self.token = port, token
        self.arrivals, self.duplicates = arrivals, duplicates
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write((f"GET /v1/notifications/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Authorization: Bearer {self.token}\r\nAccept: text/event-stream\r\n\r\n")
                     .encode())
        await writer.drain()
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                if line.startswith(b": connected"):
                    self.ready.set()
                elif line.startswith(b"data: "):
                    now = time.time()
                    body = json.loads(line[6:])
                    name = str(body["data"].get("projectName", ""))
                    if name.startswith("bench "):
                        number = int(name.split()[1])
                        if number in self.arrivals:
                            self.duplicates.append(number)
                        else:
                            self.arrivals[number] = now
        finally:
            writer.close()


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile; ``inf`` entries (lost notifications) sort last."""
    if not ordered:
        return math.inf
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _ms(value: float) -> float | None:
    return None if math.isinf(value) else round(value * 1000, 1)


async def measure(base: str, port: int, pid: int, owner_url: str, args: argparse.Namespace
                  ) -> dict[str, Any]:
    tenant_id, admin_id, members = await seed(base, args.users)
    # Let the consumers work off the seeding backlog (welcome notifications, audit) first:
    # the last member's welcome means the notifications consumer reached the present.
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        headers = {"Authorization": f"Bearer {members[-1][1]}"}
        for _ in range(600):
            page = (await http.get("/v1/notifications", headers=headers)).json()
            if page["items"]:
                break
            await asyncio.sleep(0.5)
    await asyncio.sleep(5)
    arrivals: dict[int, float] = {}
    duplicates: list[int] = []
    before = rss_kib(pid)
    clients = [Client(port, token, arrivals, duplicates) for _, token in members]
    for client in clients:
        client.task = asyncio.create_task(client.run())
    await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in clients)), 120)
    await asyncio.sleep(3)
    after = rss_kib(pid)

    conn = await connect(owner_url)
    total = int(args.rate * args.duration)
    sent_at: list[float] = []
    lags: dict[str, int] = {}
    profiler = None
    if args.profile:  # py-spy samples the API process during the load only
        profiler = await asyncio.create_subprocess_exec(
            "py-spy", "record", "-p", str(pid), "-f", "raw", "-o", args.profile,
            "--duration", str(int(args.duration) + 2), "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    lag_watch = asyncio.create_task(_watch_consumers(owner_url, lags))
    cpu_before = tree_cpu_seconds(pid)
    start = time.perf_counter()
    try:
        for i in range(total):
            due = start + i / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            user_id = members[i % len(members)][0]
            stamp = time.time()
            sent_at.append(stamp)
            if args.direct:
                await _direct(conn, tenant_id, user_id, i)
                continue
            await conn.execute(
                "INSERT INTO bus.outbox (id, tenant_id, type, occurred_at, actor_id, "
                "subject_type, subject_id, data) VALUES ($1, $2, 'project.member_added', now(), "
                "$3, 'project', $4, $5::jsonb)",
                uuid.uuid4(), uuid.UUID(tenant_id), uuid.UUID(admin_id), str(uuid.uuid4()),
                json.dumps({"userId": user_id, "role": "VIEWER",
                            "projectName": f"bench {i} {stamp:.6f}"}),
            )
        achieved = total / (time.perf_counter() - start)
        deadline = time.monotonic() + args.grace
        while len(arrivals) < total and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        cpu_after = tree_cpu_seconds(pid)
        elapsed = time.perf_counter() - start
    finally:
        lag_watch.cancel()
        await conn.close()
        if profiler is not None:
            await profiler.wait()
        for client in clients:
            if client.task is not None:
                client.task.cancel()
    return {
        "connections": len(clients),
        **summarize(sent_at, arrivals, requested=args.rate, achieved=achieved),
        "duplicates": len(duplicates),
        "max_consumer_lag_events": lags,
        "api_cpu_cores_during_load": (
            round((cpu_after - cpu_before) / elapsed, 2)
            if cpu_before is not None and cpu_after is not None else None),
        "api_rss_kib": {"before_connections": before, "with_idle_connections": after},
        "memory_per_idle_connection_kib": round((after - before) / max(len(clients), 1), 1),
    }


def summarize(sent_at: list[float], arrivals: dict[int, float], *, requested: float,
              achieved: float) -> dict[str, Any]:
    """Latencies over **every** notification sent: one never received counts as
    infinitely late, so its percentile reads ``None`` and the run is not ``met``."""
    total = len(sent_at)
    received = sorted(arrivals[i] - sent_at[i] for i in range(total) if i in arrivals)
    lost = total - len(received)
    everything = received + [math.inf] * lost
    p99 = percentile(everything, 0.99)
    met = (lost == 0 and achieved >= 0.95 * requested
           and not math.isinf(p99) and p99 * 1000 < TARGET_P99_MS)
    return {
        "notifications_sent": total, "notifications_received": len(received),
        "notifications_lost": lost,
        "requested_rate_per_s": requested, "achieved_rate_per_s": round(achieved, 1),
        "latency_ms": {  # over every notification sent; null = beyond the received ones
            "p50": _ms(percentile(everything, 0.50)), "p95": _ms(percentile(everything, 0.95)),
            "p99": _ms(p99), "max": _ms(everything[-1]) if everything else None,
        },
        "latency_received_only_ms": {
            "p50": _ms(percentile(received, 0.50)), "p99": _ms(percentile(received, 0.99)),
            "mean": round(statistics.fmean(received) * 1000, 1) if received else None,
        },
        "target": {"p99_ms": TARGET_P99_MS, "lost": 0}, "met": met,
    }


async def _watch_consumers(owner_url: str, lags: dict[str, int]) -> None:
    """Every 0.5 s: how many committed outbox events each consumer has not handled yet;
    keeps the maximum per consumer (which one held the notifications back, if any)."""
    conn = await connect(owner_url)
    try:
        while True:
            rows = await conn.fetch(
                "SELECT c.consumer, (SELECT count(*) FROM bus.outbox o "
                "WHERE (o.xid, o.position) > (c.last_xid, c.last_position)) AS lag "
                "FROM bus.consumer_offsets c")
            for row in rows:
                lags[row["consumer"]] = max(lags.get(row["consumer"], 0), int(row["lag"]))
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def _direct(conn: Any, tenant_id: str, user_id: str, number: int) -> None:
    """The real-time layer alone: a notification row and its pg_notify in one transaction,
    exactly what ``NotificationService.notify`` writes, without the event consumer."""
    data = {"projectName": f"bench {number} {time.time():.6f}"}
    nid = uuid.uuid4()
    async with conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO notifications.notifications (id, tenant_id, user_id, type, document, "
            "created_at) VALUES ($1, $2, $3, 'project.member_added', $4::jsonb, now()) "
            "RETURNING seq, created_at", nid, uuid.UUID(tenant_id), uuid.UUID(user_id),
            json.dumps({"type": "project.member_added", "title": "t", "body": "b",
                        "data": data}))
        message = {"tenantId": tenant_id, "userId": user_id, "id": str(nid), "seq": row["seq"],
                   "notification": {"id": str(nid), "type": "project.member_added",
                                    "title": "t", "body": "b", "data": data, "readAt": None,
                                    "createdAt": row["created_at"].isoformat()}}
        await conn.execute("SELECT pg_notify('pantherahive_notifications', $1)",
                           json.dumps(message))


def markdown(doc: dict[str, Any]) -> str:
    r = doc["result"]
    lat = r["latency_ms"]
    mode = ("notification row + pg_notify → listener → SSE (`--direct`)" if doc["direct"]
            else "outbox event → embedded consumer runtime → SSE")

    def ms(value: float | None) -> str:
        return "lost" if value is None else f"{value:,.1f}"

    return "\n".join([
        f"# Notifications SSE benchmark {doc['stamp']}{' (direct)' if doc['direct'] else ''}",
        "",
        f"Path: {mode}. One API process (`pantherahive serve`, embedded bus, consumers in "
        f"the process), {doc['database']}. {doc['machine']['cpu_count']} CPUs, load average "
        f"at start {doc['machine']['load_average']} (shared with other work). Commit "
        f"`{doc['git']['commit'][:12]}`{' (dirty)' if doc['git']['dirty'] else ''}.",
        "",
        "Latency = SSE frame received - event commit requested (one clock). A notification "
        f"not received {doc['args']['grace']} s after the last send is lost and counts as "
        "infinitely late (`lost` in a percentile column).",
        "",
        "| connections | asked/s | achieved/s | sent | received | lost | dup | p50 ms | "
        "p95 ms | p99 ms | max ms | API cores | KiB per idle conn | met |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {r['connections']:,} | {r['requested_rate_per_s']:g} | "
        f"{r['achieved_rate_per_s']:g} | {r['notifications_sent']:,} | "
        f"{r['notifications_received']:,} | {r['notifications_lost']:,} | {r['duplicates']} | "
        f"{ms(lat['p50'])} | {ms(lat['p95'])} | {ms(lat['p99'])} | {ms(lat['max'])} | "
        f"{r['api_cpu_cores_during_load']} | {r['memory_per_idle_connection_kib']} | "
        f"{'yes' if r['met'] else 'NO'} |",
        "",
        f"Target: p99 < {TARGET_P99_MS:g} ms with nothing lost at the asked rate.",
        "",
        "Largest backlog of each event consumer during the load (outbox events not yet "
        "handled, sampled every 0.5 s): " + (", ".join(
            f"{name} {lag:,}" for name, lag in sorted(
                r.get("max_consumer_lag_events", {}).items(), key=lambda kv: -kv[1]))
            or "—") + ".",
        "",
    ])


def write(doc: dict[str, Any]) -> list[Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"notifications-sse-{doc['stamp']}{'-direct' if doc['direct'] else ''}"
    paths = [RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"]
    paths[0].write_text(json.dumps(doc, indent=2) + "\n")
    paths[1].write_text(markdown(doc))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000, help="SSE connections (one per user)")
    parser.add_argument("--rate", type=float, default=200.0, help="notifications per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--direct", action="store_true",
                        help="skip the event consumer: write notifications + NOTIFY directly")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds after the last send before a missing one is lost")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--profile", metavar="PATH",
                        help="py-spy (on PATH) the API process during the load; raw format")
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    facts = machine()
    work = Path(tempfile.mkdtemp(prefix="ph-bench-sse-"))
    with provision(os.environ.get("DATABASE_URL"), work, keep=False, run=asyncio.run) as (
            url, description):
        upgrade(url)
        server = start_platform(
            database_url=app_login(url, asyncio.run), jwt_secret=secrets.token_urlsafe(36),
            work_dir=work, workers=1,
            extra_env={"PANTHERAHIVE_ARGON2_TIME_COST": "1",
                       "PANTHERAHIVE_ARGON2_MEMORY_KIB": "1024",
                       "PANTHERAHIVE_ARGON2_PARALLELISM": "1",
                       "PANTHERAHIVE_DB_POOL_SIZE": "20"})
        try:
            server.wait_ready("/readyz")
            result = asyncio.run(measure(server.base_url, server.port, server.pid, url, args))
        finally:
            server.stop()
    doc = {"stamp": stamp, "direct": args.direct, "args": vars(args), "database": description,
           "machine": facts, "git": git(), "versions": versions(), "result": result}
    print(json.dumps(doc["result"], indent=2))
    if not args.no_save:
        for path in write(doc):
            print(f"wrote {path}")
    if not result["met"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
