"""Event → SSE client latency and memory per idle SSE connection (issue 5's target:
p99 under 100 ms at 200 notifications/s to 1,000 open connections on one API process).

    .venv/bin/python -m bench.notifications_sse [--users 1000] [--rate 200] [--duration 20]

One API process (`pantherahive serve`, embedded bus: consumers in the process) on a real
PostgreSQL; this process opens one SSE connection per user over loopback, records the API
process's RSS before and after, then writes ``project.member_added`` events into the
outbox (as the database owner, autocommit) at the given rate, each naming one user and
carrying its send time. Latency = client receipt - event commit request, on one clock.
The event goes through the whole path: outbox NOTIFY → consumer → notification row +
delivery row + pg_notify → listener → hub → SSE frame.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.db import connect, provision
from bench.processes import start_platform
from pantherahive.infra.db.migrate import upgrade

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
    """One raw SSE connection (a few KiB here, so 1,000 fit in this process easily)."""

    def __init__(self, port: int, token: str, latencies: list[float]) -> None:
        self.port, self.token, self.latencies = port, token, latencies
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
                    sent = body["data"].get("projectName", "")
                    if sent.startswith("bench "):
                        self.latencies.append(now - float(sent[6:]))
        finally:
            writer.close()


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
    latencies: list[float] = []
    before = rss_kib(pid)
    clients = [Client(port, token, latencies) for _, token in members]
    for client in clients:
        client.task = asyncio.create_task(client.run())
    await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in clients)), 120)
    await asyncio.sleep(3)
    after = rss_kib(pid)

    conn = await connect(owner_url)
    total = int(args.rate * args.duration)
    start = time.perf_counter()
    try:
        for i in range(total):
            due = start + i / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            user_id = members[i % len(members)][0]
            if args.direct:
                await _direct(conn, tenant_id, user_id)
                continue
            await conn.execute(
                "INSERT INTO bus.outbox (id, tenant_id, type, occurred_at, actor_id, "
                "subject_type, subject_id, data) VALUES ($1, $2, 'project.member_added', now(), "
                "$3, 'project', $4, $5::jsonb)",
                uuid.uuid4(), uuid.UUID(tenant_id), uuid.UUID(admin_id), str(uuid.uuid4()),
                json.dumps({"userId": user_id, "role": "VIEWER",
                            "projectName": f"bench {time.time():.6f}"}),
            )
        achieved = total / (time.perf_counter() - start)
        deadline = time.monotonic() + 15
        while len(latencies) < total and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
        for client in clients:
            if client.task is not None:
                client.task.cancel()
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else -1

    return {
        "connections": len(clients), "notifications_sent": total,
        "notifications_received": len(ordered), "achieved_rate_per_s": round(achieved, 1),
        "latency_ms": {"p50": round(pct(0.50), 1), "p95": round(pct(0.95), 1),
                       "p99": round(pct(0.99), 1), "max": round(pct(1.0), 1),
                       "mean": round(statistics.fmean(ordered) * 1000, 1) if ordered else -1},
        "api_rss_kib": {"before_connections": before, "with_idle_connections": after},
        "memory_per_idle_connection_kib": round((after - before) / max(len(clients), 1), 1),
    }


async def _direct(conn: Any, tenant_id: str, user_id: str) -> None:
    """The real-time layer alone: a notification row and its pg_notify in one transaction,
    exactly what ``NotificationService.notify`` writes, without the event consumer."""
    data = {"projectName": f"bench {time.time():.6f}"}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000, help="SSE connections (one per user)")
    parser.add_argument("--rate", type=float, default=200.0, help="notifications per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--direct", action="store_true",
                        help="skip the event consumer: write notifications + NOTIFY directly")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ph-bench-sse-"))
    with provision(os.environ.get("DATABASE_URL"), work, keep=False, run=asyncio.run) as (
            url, description):
        upgrade(url)
        server = start_platform(
            database_url=url, jwt_secret=secrets.token_urlsafe(36), work_dir=work, workers=1,
            extra_env={"PANTHERAHIVE_ARGON2_TIME_COST": "1",
                       "PANTHERAHIVE_ARGON2_MEMORY_KIB": "1024",
                       "PANTHERAHIVE_ARGON2_PARALLELISM": "1",
                       "PANTHERAHIVE_DB_POOL_SIZE": "20"})
        try:
            server.wait_ready("/readyz")
            result = asyncio.run(measure(server.base_url, server.port, server.pid, url, args))
        finally:
            server.stop()
    print(json.dumps({"database": description, **result}, indent=2))


if __name__ == "__main__":
    main()
