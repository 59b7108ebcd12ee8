"""Audit search latency at scale: seed N audit events for one tenant in bulk (SQL
``generate_series``, secondary indexes built after the load), then time the API's own
query path (``AuditService.list_events``, app role under RLS) for each filter.

    python -m bench.audit_search --rows 1000000          # ~1-2 min on 2 cores
    python -m bench.audit_search --rows 10000000         # the 10M check (much longer)

Writes ``bench/results/audit_search_<rows>.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

from bench import db as bench_db

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
START = datetime(2024, 1, 1, tzinfo=UTC)
ACTORS = 1_000
RESOURCES = 100_000
ACTIONS = [f"{noun}.{verb}" for noun in ("task", "project", "user", "auth", "webhook")
           for verb in ("created", "updated", "deleted", "denied")]
RESOURCE_TYPES = ["task", "project", "user", "auth", "webhook"]
WORDS = [f"{a}{b}" for a in ("red", "blue", "green", "amber", "violet", "grey", "teal", "gold",
                               "rose", "jade") for b in ("fox", "owl", "elk", "bee", "cod",
                               "yak", "ant", "emu", "hen", "ram", "bat", "cat", "dog", "eel",
                               "gnu", "hog", "jay", "kit", "lark", "mole")]


def actor(n: int) -> UUID:
    return UUID(f"00000000-0000-4000-8000-{n:012d}")


SEED_SQL = """
INSERT INTO audit.audit_events (id, tenant_id, seq, occurred_at, actor_id, actor_type,
  action, resource_type, resource_id, request_id, ip, changes, data, hash, prev_hash)
SELECT gen_random_uuid(), $1, s, $2::timestamptz + s * interval '1 second',
  ('00000000-0000-4000-8000-' || lpad((s % $3)::text, 12, '0'))::uuid, 'user',
  ($4::text[])[1 + (s * 7) % array_length($4::text[], 1)],
  ($5::text[])[1 + s % array_length($5::text[], 1)],
  'r' || ((s * 31) % $6),
  'req-' || s, '10.0.0.1',
  jsonb_build_object('title', jsonb_build_array(
    ($7::text[])[1 + s % array_length($7::text[], 1)] || ' ' ||
    ($7::text[])[1 + (s * 13) % array_length($7::text[], 1)],
    ($7::text[])[1 + (s * 17) % array_length($7::text[], 1)])),
  '{}'::jsonb, md5(s::text) || md5((s + 1)::text), md5((s - 1)::text) || md5(s::text)
FROM generate_series($8::bigint, $9::bigint) AS s
"""


async def seed(owner_url: str, tenant: UUID, rows: int, log: Callable[[str], None]) -> None:
    conn = await bench_db.connect(owner_url)
    try:
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'audit' "
            "AND tablename = 'audit_events' AND indexname NOT IN "
            "('pk_audit_events', 'uq_audit_events_seq')"
        )
        for index in indexes:
            await conn.execute(f"DROP INDEX audit.{index['indexname']}")
        batch = 500_000
        began = time.perf_counter()
        for first in range(1, rows + 1, batch):
            last = min(rows, first + batch - 1)
            await conn.execute(SEED_SQL, tenant, START, ACTORS, ACTIONS, RESOURCE_TYPES,
                               RESOURCES, WORDS, first, last)
            log(f"  seeded {last:,} rows ({time.perf_counter() - began:.0f} s)")
        await conn.execute(
            "INSERT INTO audit.chains (tenant_id, last_seq, last_hash) "
            "VALUES ($1, $2, repeat('0', 64))", tenant, rows,
        )
        for index in indexes:
            started = time.perf_counter()
            await conn.execute(index["indexdef"])
            log(f"  {index['indexname']}: {time.perf_counter() - started:.0f} s")
        await conn.execute("VACUUM ANALYZE audit.audit_events")
    finally:
        await conn.close()


async def measure(app_url: str, tenant: UUID, rows: int, repeats: int) -> dict[str, Any]:
    from pantherahive.domains.audit.api import ArchiveConfig, ArchiveStore, AuditService
    from pantherahive.domains.audit.repository import EventFilters
    from pantherahive.infra.db.engine import Database, set_tenant
    from pantherahive.infra.security.principal import AuthContext, Role

    service = AuditService(ArchiveStore(ArchiveConfig(url=tempfile.mkdtemp())))
    auth = AuthContext(tenant_id=tenant, user_id=actor(1), role=Role.ADMIN)
    db = Database.connect(app_url, pool_size=2, max_overflow=0)
    rng = random.Random(7)

    def window() -> EventFilters:
        at = START + timedelta(seconds=rng.randrange(rows))
        return EventFilters(occurred_from=at, occurred_to=at + timedelta(hours=1))

    cases: dict[str, Callable[[], tuple[EventFilters, str | None]]] = {
        "newest page (no filter)": lambda: (EventFilters(), None),
        "deep page (cursor at a random seq)": lambda: (
            EventFilters(), _cursor(rng.randrange(2, rows))),
        "actorId": lambda: (EventFilters(actor_id=actor(rng.randrange(ACTORS))), None),
        "action": lambda: (EventFilters(action=rng.choice(ACTIONS)), None),
        "resourceType + resourceId": lambda: (EventFilters(
            resource_type=RESOURCE_TYPES[(s := rng.randrange(RESOURCES)) % 5],
            resource_id=f"r{s}"), None),
        "from/to (1 hour)": lambda: (window(), None),
        "q one word": lambda: (EventFilters(q=rng.choice(WORDS)), None),
        "q two words (AND)": lambda: (EventFilters(q=f"{rng.choice(WORDS)} {rng.choice(WORDS)}"),
                                      None),
        "action + actorId": lambda: (EventFilters(action=rng.choice(ACTIONS),
                                                  actor_id=actor(rng.randrange(ACTORS))), None),
    }
    results: dict[str, Any] = {}
    try:
        for name, make in cases.items():
            timings: list[float] = []
            for i in range(repeats + 3):
                filters, cursor = make()
                async with db.sessions() as session, session.begin():
                    await set_tenant(session, tenant)
                    started = time.perf_counter()
                    items, _next = await service.list_events(
                        session, auth, filters=filters, cursor=cursor, limit=50
                    )
                    elapsed = (time.perf_counter() - started) * 1000
                if i >= 3:  # warm-up excluded
                    timings.append(elapsed)
            timings.sort()
            results[name] = {
                "p50_ms": round(statistics.median(timings), 2),
                "p99_ms": round(timings[min(len(timings) - 1, int(len(timings) * 0.99))], 2),
                "max_ms": round(timings[-1], 2),
                "last_page_items": len(items),
            }
    finally:
        await db.dispose()
    return results


def _cursor(seq: int) -> str:
    """The cursor the API would hand out after the event ``seq`` (seeded 1 s apart)."""
    from pantherahive.core.pagination import encode_cursor

    return encode_cursor([(START + timedelta(seconds=seq)).isoformat(), seq])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_search")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--database-url", default=None,
                        help="a server to create a scratch database on (default: embedded)")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)

    def run(coro: Awaitable[T]) -> T:
        return asyncio.run(coro)  # type: ignore[arg-type]

    from pantherahive.infra.db.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="ph-audit-bench-") as tmp, bench_db.provision(
        args.database_url, Path(tmp), keep=False, run=run
    ) as (url, where):
        print(f"PostgreSQL: {where}", flush=True)
        upgrade(url)
        tenant = uuid4()
        began = time.perf_counter()
        run(seed(url, tenant, args.rows, lambda m: print(m, flush=True)))
        seeded = time.perf_counter() - began
        results = run(measure(bench_db.app_login(url, run), tenant, args.rows, args.repeats))
    report = {"rows": args.rows, "repeats": args.repeats, "seed_seconds": round(seeded, 1),
              "limit": 50, "results": results}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    out = args.output_dir / f"audit_search_{args.rows}.json"
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"\nAudit search, {args.rows:,} events in one tenant, limit 50, "
          f"{args.repeats} runs each (seeded in {seeded:.0f} s)\n")
    print("| query | p50 ms | p99 ms |\n|---|---:|---:|")
    for name, row in results.items():
        print(f"| {name} | {row['p50_ms']} | {row['p99_ms']} |")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
