"""Seeding: the tenant and its users through the API (so they are exactly what the platform
makes), then projects, members and tasks in bulk with SQL as the database owner.

The SQL writes rows the way the services write them (read migrations 0002 and 0003): a
project's owner is also its member with role OWNER, ids are UUIDs, every row carries the
tenant, tasks leave the generated columns (``due_key``, ``priority_order``, ``search``)
to PostgreSQL, ``completed_at`` is set exactly for DONE tasks, ``version`` starts at 1.
Bulk rows publish no events: nothing downstream needs to hear about a fixture.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

PASSWORD = "bench-password-1"

# Ordinary English words (no stop words), so full-text queries match a useful share of rows.
_WORDS = (
    "invoice payment gateway refund customer portal dashboard report export import schedule "
    "calendar meeting agenda review release deploy rollback pipeline build compile package "
    "registry mirror cache proxy router balancer cluster replica backup restore snapshot "
    "archive migration schema index query planner vacuum storage bucket upload download "
    "stream socket webhook callback notification email message channel template render "
    "layout widget button modal dialog tooltip sidebar navbar footer header banner carousel "
    "gallery thumbnail avatar profile account password session token permission role policy "
    "audit compliance privacy consent cookie tracker analytics metric alert incident outage "
    "latency throughput capacity quota budget forecast pricing discount coupon voucher "
    "checkout basket order shipment delivery courier warehouse inventory stock supplier "
    "vendor contract tender proposal estimate milestone roadmap backlog sprint "
    "retrospective standup kanban epic story defect crash regression flaky benchmark "
    "tracing logging parser lexer grammar compiler interpreter runtime kernel driver "
    "firmware sensor camera printer scanner keyboard monitor battery charger adapter cable "
    "antenna satellite weather harbour airport station ticket passenger luggage hotel "
    "booking reservation restaurant kitchen recipe menu supper breakfast garden tractor "
    "harvest orchard vineyard cellar bakery pottery library museum theatre concert festival"
)
VOCABULARY = tuple(_WORDS.split())
# The words the search workload asks for (one word, or two: websearch AND semantics).
SEARCH_WORDS = tuple(VOCABULARY[::7])
LABELS = ("backend", "frontend", "ops", "design", "docs", "security", "data", "mobile")


@dataclass
class Tenant:
    id: str
    slug: str
    admin_id: str
    owner_id: str
    editor_id: str
    editor_login: str = "editor"
    password: str = PASSWORD
    project_ids: list[str] = field(default_factory=list)
    scale_projects: dict[int, str] = field(default_factory=dict)


def _post(client: httpx.Client, path: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.post(path, json=body, headers=headers)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"POST {path} -> {response.status_code}: {response.text[:300]}")
    return response.json()


def seed_identity(base_url: str) -> Tenant:
    """A tenant with an ADMIN, a MANAGER who owns the projects and a MEMBER who is an EDITOR
    of every project (the benchmark's caller: the ordinary, non-admin permission path)."""
    slug = f"bench-{secrets.token_hex(4)}"
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        created = _post(
            client,
            "/v1/tenants",
            {"name": "Benchmark Inc.", "slug": slug,
             "admin": {"username": "admin", "password": PASSWORD,
                       "email": f"admin@{slug}.example", "firstName": "Bench",
                       "lastName": "Admin"}},
        )
        admin_token = created["accessToken"]
        owner = _post(
            client, "/v1/users",
            {"username": "owner", "password": PASSWORD, "role": "MANAGER",
             "email": f"owner@{slug}.example", "firstName": "Olivia", "lastName": "Owner"},
            admin_token,
        )
        editor = _post(
            client, "/v1/users",
            {"username": "editor", "password": PASSWORD, "role": "MEMBER",
             "email": f"editor@{slug}.example", "firstName": "Eddie", "lastName": "Editor"},
            admin_token,
        )
    return Tenant(
        id=created["tenant"]["id"], slug=slug, admin_id=created["user"]["id"],
        owner_id=owner["id"], editor_id=editor["id"],
    )


def login(base_url: str, tenant: Tenant) -> str:
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        body = _post(
            client, "/v1/auth/login",
            {"tenant": tenant.slug, "login": tenant.editor_login, "password": tenant.password},
        )
    token: str = body["accessToken"]
    return token


INSERT_PROJECTS = """
INSERT INTO projects.projects (id, tenant_id, name, description, owner_id, status, start_date,
                               end_date, version, created_at, updated_at)
SELECT id, $1::uuid, $3::text || ' ' || n, 'Seeded by the benchmark.', $2::uuid, 'ACTIVE',
       DATE '2026-01-01', DATE '2027-12-31', 1, now(), now()
FROM unnest($4::uuid[]) WITH ORDINALITY AS p(id, n)
"""
INSERT_MEMBERS = """
INSERT INTO projects.members (project_id, user_id, tenant_id, role, added_at)
SELECT id, $2::uuid, $1::uuid, 'OWNER', now() FROM unnest($4::uuid[]) AS p(id)
UNION ALL
SELECT id, $3::uuid, $1::uuid, 'EDITOR', now() FROM unnest($4::uuid[]) AS p(id)
"""
# Row g of the series goes to project g % n; words are picked by multiplicative hashing so
# the text is varied but the same on every run. Status mix: 40 % TODO, 20 % IN_PROGRESS,
# 10 % IN_REVIEW, 20 % DONE, 10 % CANCELLED.
INSERT_TASKS = """
INSERT INTO tasks.tasks (id, tenant_id, project_id, title, description, status, priority,
                         assignee_id, reporter_id, due_date, labels, version, created_at,
                         updated_at, completed_at)
SELECT gen_random_uuid(), $1::uuid, ($2::uuid[])[(1 + g % cardinality($2::uuid[]))::int],
       'Task ' || g || ' ' || pg_temp.w(g, 7919, 0) || ' ' || pg_temp.w(g, 104729, 17),
       pg_temp.w(g, 31, 3) || ' ' || pg_temp.w(g, 1009, 5) || ' the '
         || pg_temp.w(g, 4099, 11) || ' for ' || pg_temp.w(g, 6151, 13) || ', then '
         || pg_temp.w(g, 12289, 19) || ' and ' || pg_temp.w(g, 24593, 23) || ' '
         || pg_temp.w(g, 49157, 29) || ' ' || pg_temp.w(g, 98317, 31) || '.',
       (ARRAY['TODO', 'TODO', 'TODO', 'TODO', 'IN_PROGRESS', 'IN_PROGRESS', 'IN_REVIEW',
              'DONE', 'DONE', 'CANCELLED'])[(1 + (g / 7) % 10)::int],
       (ARRAY['LOW', 'MEDIUM', 'HIGH', 'URGENT'])[(1 + (g / 10) % 4)::int],
       CASE WHEN g % 3 = 0 THEN NULL WHEN g % 3 = 1 THEN $4::uuid ELSE $3::uuid END,
       $3::uuid,
       CASE WHEN g % 4 = 0 THEN NULL ELSE DATE '2027-01-01' + (g % 365)::int END,
       ARRAY[($5::text[])[(1 + g % cardinality($5::text[]))::int]],
       1, at, at, CASE WHEN (g / 7) % 10 IN (7, 8) THEN at END
FROM generate_series($6::bigint, $7::bigint) AS g,
     LATERAL (SELECT TIMESTAMPTZ '2026-01-01 00:00:00+00' + g * INTERVAL '1 second' AS at) AS ts
"""
# pg_temp.w(g, a, b): a word of the vocabulary, picked by multiplicative hashing of g.
WORD_FUNCTION = """
CREATE OR REPLACE FUNCTION pg_temp.w(g bigint, a bigint, b bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT ($VOCAB$)[(1 + (g * a + b) % $N$)::int]
$$
"""


async def seed_projects(
    conn: asyncpg.Connection, tenant: Tenant, count: int, name: str
) -> list[str]:
    ids = [uuid.uuid4() for _ in range(count)]
    async with conn.transaction():
        await conn.execute(INSERT_PROJECTS, uuid.UUID(tenant.id), uuid.UUID(tenant.owner_id),
                           name, ids)
        await conn.execute(INSERT_MEMBERS, uuid.UUID(tenant.id), uuid.UUID(tenant.owner_id),
                           uuid.UUID(tenant.editor_id), ids)
    return [str(i) for i in ids]


class Counter:
    """Global task numbering, so every seeded task has a distinct number and timestamp."""

    def __init__(self) -> None:
        self.next = 1


async def seed_tasks(
    conn: asyncpg.Connection,
    tenant: Tenant,
    project_ids: list[str],
    count: int,
    counter: Counter,
    progress: Callable[[str], None],
    batch: int = 50_000,
) -> None:
    vocabulary = ", ".join(f"'{word}'" for word in VOCABULARY if word.isalpha())
    await conn.execute(
        WORD_FUNCTION.replace("$VOCAB$", f"ARRAY[{vocabulary}]").replace(
            "$N$", str(len(VOCABULARY))
        )
    )
    done = 0
    started = time.monotonic()
    while done < count:
        size = min(batch, count - done)
        first = counter.next
        await conn.execute(
            INSERT_TASKS, uuid.UUID(tenant.id), [uuid.UUID(p) for p in project_ids],
            uuid.UUID(tenant.owner_id), uuid.UUID(tenant.editor_id), list(LABELS),
            first, first + size - 1,
        )
        counter.next += size
        done += size
        rate = done / max(time.monotonic() - started, 1e-6)
        progress(f"  tasks: {done:,}/{count:,} ({rate:,.0f} rows/s)")


async def create_ceiling_outbox(conn: asyncpg.Connection) -> None:
    """The ceiling's outbox: ``bus.outbox``'s twin that nobody consumes."""
    await conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS bench.outbox (LIKE bus.outbox INCLUDING ALL)"
    )


async def analyze(conn: asyncpg.Connection) -> None:
    for table in ("tasks.tasks", "projects.projects", "projects.members", "identity.users"):
        await conn.execute(f"VACUUM (ANALYZE) {table}")


async def random_task_ids(
    conn: asyncpg.Connection, tenant: Tenant, project_ids: list[str], count: int
) -> list[str]:
    rows = await conn.fetch(
        "SELECT id FROM tasks.tasks WHERE tenant_id = $1 AND project_id = ANY($2::uuid[]) "
        "ORDER BY md5(id::text) LIMIT $3",
        uuid.UUID(tenant.id), [uuid.UUID(p) for p in project_ids], count,
    )
    return [str(r["id"]) for r in rows]
