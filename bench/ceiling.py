"""The "ceiling": the fastest honest Python answer to the benchmark's requests.

A raw ASGI app on an asyncpg pool, served by the same uvicorn with the same worker count
as the platform, that answers the same URLs with the same SQL the platform's repositories
run (same columns, same dependency subqueries, same indexes, the outbox event in the same
transaction for writes, argon2id with the same parameters for login) — and nothing else:
no authentication, authorization, tenant scoping (RLS), validation, middleware,
idempotency, metrics or logging. Its events go to ``bench.outbox``, a copy of
``bus.outbox`` (same columns, defaults and indexes) that no consumer reads, so the
platform's event consumers never work for the ceiling. The platform's throughput as a
share of this one is the price of everything the platform adds.

Run as ``python -m bench.ceiling``; configured by ``BENCH_CEILING_*`` variables.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import jwt
import orjson
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

from bench.db import asyncpg_args

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

READ_COLUMNS = """
  t.id, t.project_id, t.title, t.description, t.status, t.priority, t.assignee_id,
  t.reporter_id, t.due_date, t.labels,
  ARRAY(SELECT d.depends_on_id FROM tasks.task_dependencies d
        WHERE d.task_id = t.id ORDER BY d.depends_on_id) AS depends_on,
  COALESCE((SELECT true FROM tasks.task_dependencies d JOIN tasks.tasks b
             ON b.id = d.depends_on_id
             WHERE d.task_id = t.id AND b.status NOT IN ('CANCELLED', 'DONE') LIMIT 1),
           false) AS blocked,
  t.version, t.created_at, t.updated_at, t.completed_at
"""
GET_TASK = "SELECT {READ} FROM tasks.tasks t WHERE t.tenant_id = $1 AND t.id = $2"
LIST_TASKS = """
SELECT {READ} FROM tasks.tasks t
WHERE t.tenant_id = $1 AND t.project_id = $2 AND t.status = ANY($3::varchar[])
ORDER BY t.created_at, t.id LIMIT $4
"""
SEARCH_TASKS = """
SELECT {READ} FROM tasks.tasks t
WHERE t.tenant_id = $1 AND t.project_id = $2
  AND t.search @@ websearch_to_tsquery('english'::regconfig, $3)
ORDER BY t.created_at, t.id LIMIT $4
"""
CREATE_TASK = """
WITH w AS (
  INSERT INTO tasks.tasks (id, tenant_id, project_id, title, description, status, priority,
                           assignee_id, reporter_id, due_date, labels)
  VALUES ($2, $1, $3, $4, $5, $6, $7, $8, $9, $10, $11)
  RETURNING *
), e AS (
  INSERT INTO bench.outbox (id, tenant_id, type, occurred_at, actor_id, subject_type,
                          subject_id, data)
  SELECT $12, $1, 'task.created', now(), $9, 'task', w.id::text, $13::jsonb FROM w
)
SELECT w.id, w.project_id, w.title, w.description, w.status, w.priority, w.assignee_id,
       w.reporter_id, w.due_date, w.labels, ARRAY[]::uuid[] AS depends_on, false AS blocked,
       w.version, w.created_at, w.updated_at, w.completed_at
FROM w
"""
UPDATE_STATUS = """
WITH w AS (
  UPDATE tasks.tasks t SET status = $3::varchar, version = t.version + 1, updated_at = now(),
    completed_at = CASE WHEN $3::varchar = 'DONE' THEN COALESCE(t.completed_at, now()) END
  WHERE t.tenant_id = $1 AND t.id = $2 AND t.version = $4
  RETURNING t.*
), e AS (
  INSERT INTO bench.outbox (id, tenant_id, type, occurred_at, actor_id, subject_type,
                          subject_id, data)
  SELECT $5, $1, 'task.status_changed', now(), $6, 'task', w.id::text, $7::jsonb FROM w
)
SELECT w.id, w.project_id, w.title, w.description, w.status, w.priority, w.assignee_id,
       w.reporter_id, w.due_date, w.labels,
       ARRAY(SELECT d.depends_on_id FROM tasks.task_dependencies d
             WHERE d.task_id = w.id ORDER BY d.depends_on_id) AS depends_on,
       COALESCE((SELECT true FROM tasks.task_dependencies d JOIN tasks.tasks b
                 ON b.id = d.depends_on_id WHERE d.task_id = w.id
                 AND b.status NOT IN ('CANCELLED', 'DONE') LIMIT 1), false) AS blocked,
       w.version, w.created_at, w.updated_at, w.completed_at
FROM w
"""
GET_TASK, LIST_TASKS, SEARCH_TASKS = (
    sql.replace("{READ}", READ_COLUMNS) for sql in (GET_TASK, LIST_TASKS, SEARCH_TASKS)
)
ME = """
SELECT id, username, email, first_name, last_name, role, status, created_at, updated_at
FROM identity.users WHERE tenant_id = $1 AND id = $2
"""
LOGIN_USER = """
SELECT u.id, u.tenant_id, u.password_hash, u.status, u.token_version
FROM identity.users u JOIN identity.tenants t ON t.id = u.tenant_id
WHERE t.slug = $1 AND (lower(u.username) = lower($2) OR lower(u.email) = lower($2))
"""
LOGIN_WRITE = """
WITH s AS (
  INSERT INTO identity.sessions (id, tenant_id, user_id, expires_at)
  VALUES ($4, $2, $3, $6) RETURNING id
), r AS (
  INSERT INTO identity.refresh_tokens (id, tenant_id, user_id, family_id, token_hash,
                                       expires_at)
  SELECT $1, $2, $3, s.id, $5, $6 FROM s RETURNING id
)
INSERT INTO bench.outbox (id, tenant_id, type, occurred_at, actor_id, subject_type, subject_id,
                        data)
VALUES ($7, $2, 'auth.login_succeeded', now(), $3, 'user', $3::text, '{}'::jsonb)
"""


def _task(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "projectId": row["project_id"],
        "title": row["title"],
        "description": row["description"],
        "status": row["status"],
        "priority": row["priority"],
        "assigneeId": row["assignee_id"],
        "reporterId": row["reporter_id"],
        "dueDate": row["due_date"],
        "labels": row["labels"],
        "dependsOn": row["depends_on"],
        "blocked": row["blocked"],
        "version": row["version"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "completedAt": row["completed_at"],
    }


def _json(value: Any) -> bytes:
    # asyncpg's UUID type is a uuid.UUID subclass, which orjson hands to ``default``.
    return orjson.dumps(value, default=str, option=orjson.OPT_UTC_Z)


class Ceiling:
    def __init__(self) -> None:
        env = os.environ
        self.database_url = env["BENCH_CEILING_DATABASE_URL"]
        self.tenant_id = uuid.UUID(env["BENCH_CEILING_TENANT_ID"])
        self.user_id = uuid.UUID(env["BENCH_CEILING_USER_ID"])
        self.jwt_secret = env["BENCH_CEILING_JWT_SECRET"]
        self.pool_size = int(env.get("BENCH_CEILING_POOL_SIZE", "20"))
        self.hasher = PasswordHasher(
            time_cost=int(env.get("BENCH_CEILING_ARGON2_TIME_COST", "3")),
            memory_cost=int(env.get("BENCH_CEILING_ARGON2_MEMORY_KIB", "65536")),
            parallelism=int(env.get("BENCH_CEILING_ARGON2_PARALLELISM", "4")),
        )
        self.pool: asyncpg.Pool | None = None

    # ---- ASGI -----------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        if scope["method"] in ("POST", "PATCH"):
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
        status, payload, headers = await self._route(scope, body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                args = asyncpg_args(self.database_url)
                self.pool = await asyncpg.create_pool(
                    **args,
                    min_size=self.pool_size // 2,
                    max_size=self.pool_size,
                    server_settings={"jit": "off", "application_name": "bench-ceiling"},
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(
        self, scope: Scope, body: bytes
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        method, parts = scope["method"], scope["path"].strip("/").split("/")
        headers = dict(scope["headers"])
        if parts == ["healthz"]:
            return 200, b'{"status":"ok"}', []
        if method == "GET" and parts == ["v1", "users", "me"]:
            return await self.me()
        if method == "POST" and parts == ["v1", "auth", "login"]:
            return await self.login(orjson.loads(body))
        if len(parts) == 3 and parts[:2] == ["v1", "tasks"]:
            if method == "GET":
                return await self.get_task(uuid.UUID(parts[2]))
            if method == "PATCH":
                return await self.update_task(
                    uuid.UUID(parts[2]), orjson.loads(body), headers.get(b"if-match", b"")
                )
        if len(parts) == 4 and parts[0:2] == ["v1", "projects"] and parts[3] == "tasks":
            project_id = uuid.UUID(parts[2])
            if method == "GET":
                return await self.list_tasks(project_id, parse_qs(scope["query_string"].decode()))
            if method == "POST":
                return await self.create_task(project_id, orjson.loads(body))
        return 404, b'{"status":404}', []

    # ---- handlers -------------------------------------------------------------------------
    def _etag(self, version: int) -> list[tuple[bytes, bytes]]:
        return [(b"etag", f'W/"{version}"'.encode())]

    async def me(self) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        assert self.pool is not None
        row = await self.pool.fetchrow(ME, self.tenant_id, self.user_id)
        if row is None:
            return 404, b"{}", []
        return 200, _json(
            {
                "id": row["id"], "username": row["username"], "email": row["email"],
                "firstName": row["first_name"], "lastName": row["last_name"],
                "role": row["role"], "status": row["status"], "createdAt": row["created_at"],
                "updatedAt": row["updated_at"],
            }
        ), []

    async def get_task(self, task_id: uuid.UUID) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        assert self.pool is not None
        row = await self.pool.fetchrow(GET_TASK, self.tenant_id, task_id)
        if row is None:
            return 404, b"{}", []
        return 200, _json(_task(row)), self._etag(row["version"])

    async def list_tasks(
        self, project_id: uuid.UUID, query: dict[str, list[str]]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        assert self.pool is not None
        limit = int(query.get("limit", ["50"])[0])
        if "q" in query:
            rows = await self.pool.fetch(
                SEARCH_TASKS, self.tenant_id, project_id, query["q"][0], limit + 1
            )
        else:
            rows = await self.pool.fetch(
                LIST_TASKS, self.tenant_id, project_id, query.get("status", ["TODO"]), limit + 1
            )
        items = [_task(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = f"{last['created_at'].isoformat()}|{last['id']}"
        return 200, _json({"items": items, "nextCursor": next_cursor}), []

    async def create_task(
        self, project_id: uuid.UUID, body: dict[str, Any]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        assert self.pool is not None
        task_id = uuid.uuid4()
        assignee = uuid.UUID(body["assigneeId"]) if body.get("assigneeId") else None
        row = await self.pool.fetchrow(
            CREATE_TASK, self.tenant_id, task_id, project_id, body["title"],
            body.get("description"), body.get("status", "TODO"), body.get("priority", "MEDIUM"),
            assignee, self.user_id, None, body.get("labels", []), uuid.uuid4(),
            orjson.dumps({"projectId": str(project_id)}).decode(),
        )
        assert row is not None
        return 201, _json(_task(row)), self._etag(row["version"])

    async def update_task(
        self, task_id: uuid.UUID, body: dict[str, Any], if_match: bytes
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        assert self.pool is not None
        version = int(if_match.decode().removeprefix("W/").strip('"'))
        row = await self.pool.fetchrow(
            UPDATE_STATUS, self.tenant_id, task_id, body["status"], version, uuid.uuid4(),
            self.user_id, orjson.dumps({"status": body["status"]}).decode(),
        )
        if row is None:
            return 412, b'{"status":412}', []
        return 200, _json(_task(row)), self._etag(row["version"])

    async def login(self, body: dict[str, Any]) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        assert self.pool is not None
        async with self.pool.acquire() as conn, conn.transaction():
            user = await conn.fetchrow(LOGIN_USER, body["tenant"], body["login"])
            if user is None:
                return 401, b'{"status":401}', []
            ok = await asyncio.to_thread(self._verify, user["password_hash"], body["password"])
            if not ok or user["status"] != "ACTIVE":
                return 401, b'{"status":401}', []
            refresh = f"rt_{user['tenant_id'].hex}_{secrets.token_urlsafe(32)}"
            session_id = uuid.uuid4()
            await conn.execute(
                LOGIN_WRITE, uuid.uuid4(), user["tenant_id"], user["id"], session_id,
                hashlib.sha256(refresh.encode()).digest(),
                datetime.now(UTC) + timedelta(days=30), uuid.uuid4(),
            )
        now = int(time.time())
        access = jwt.encode(
            {
                "iss": "pantherahive", "aud": "pantherahive-api", "sub": str(user["id"]),
                "tid": str(user["tenant_id"]), "ver": user["token_version"], "iat": now,
                "nbf": now, "exp": now + 900, "jti": uuid.uuid4().hex,
                "sid": str(session_id),
            },
            self.jwt_secret,
            algorithm="HS256",
        )
        return 200, orjson.dumps(
            {"accessToken": access, "refreshToken": refresh, "tokenType": "Bearer",
             "expiresIn": 900}
        ), []

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except VerificationError:
            return False


def main() -> None:
    import uvicorn

    uvicorn.run(
        "bench.ceiling:Ceiling",
        factory=True,
        host="127.0.0.1",
        port=int(os.environ["BENCH_CEILING_PORT"]),
        workers=int(os.environ.get("BENCH_CEILING_WORKERS", "1")),
        log_level="warning",
        access_log=False,
        proxy_headers=True,
        server_header=False,
    )


if __name__ == "__main__":
    main()
