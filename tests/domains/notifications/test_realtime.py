"""Real time over real sockets: SSE (Bearer or single-use ticket, heartbeats, resume with
Last-Event-ID), WebSocket auth, and two API processes sharing notifications through
PostgreSQL LISTEN/NOTIFY (and Redis pub/sub when REDIS_URL mode is on)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import add_user, create_tenant
from tests.domains.notifications.conftest import live_server, settings_for
from tests.support.servers import app_url, free_port, redis_server, wait_for_port

GUARD = 20.0  # seconds before a hung stream fails the test (not a latency assertion)


@asynccontextmanager
async def sse(base: str, path: str, headers: dict[str, str]) -> AsyncIterator[
        AsyncIterator[dict[str, Any]]]:
    """Open the stream; yields an iterator of parsed frames (comments as {"comment": ...})
    once the server confirmed the subscription."""
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(5.0, read=None)) as http, \
            http.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()

        async def frames() -> AsyncIterator[dict[str, Any]]:
            frame: dict[str, Any] = {}
            async for line in lines:
                if line == "":
                    if frame:
                        yield frame
                    frame = {}
                elif line.startswith(":"):
                    yield {"comment": line[1:].strip()}
                else:
                    key, _, value = line.partition(":")
                    frame[key] = value.lstrip()

        stream = frames()
        first = await asyncio.wait_for(anext(stream), GUARD)
        while first.get("comment") != "connected":
            first = await asyncio.wait_for(anext(stream), GUARD)
        yield stream


async def next_event(stream: AsyncIterator[dict[str, Any]],
                     type_: str = "account.password_reset") -> dict[str, Any]:
    """The next notification of this type (welcome messages may arrive meanwhile)."""
    while True:
        frame = await asyncio.wait_for(anext(stream), GUARD)
        if frame.get("event") == "notification" and json.loads(frame["data"])["type"] == type_:
            return frame


async def reset_request(base: str, slug: str, email: str) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.post("/v1/auth/password-reset",
                                   json={"tenant": slug, "email": email})
        assert response.status_code == 202


async def test_sse_bearer_heartbeat_resume_and_ticket(
    database_url: str, tmp_path: Path
) -> None:
    async with live_server(database_url, settings_for(tmp_path)) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            tenant = await create_tenant(http)
            member = await add_user(http, tenant, "MEMBER")
        assert member.email is not None
        async with sse(base, "/v1/notifications/stream", member.headers) as stream:
            await reset_request(base, tenant.slug, member.email)
            frame = await next_event(stream)
            body = json.loads(frame["data"])
            assert body["type"] == "account.password_reset"
            assert set(body) == {"id", "type", "title", "body", "data", "readAt", "createdAt"}
            first_id = frame["id"]
            # an idle stream sends comment heartbeats (0.5 s in these tests)
            beat = await asyncio.wait_for(anext(stream), GUARD)
            while "comment" not in beat:
                beat = await asyncio.wait_for(anext(stream), GUARD)
            assert beat == {"comment": "heartbeat"}
        # missed while disconnected, replayed on reconnect with Last-Event-ID
        await reset_request(base, tenant.slug, member.email)
        async with sse(base, "/v1/notifications/stream",
                       {**member.headers, "Last-Event-ID": first_id}) as stream:
            replayed = await next_event(stream)
            assert int(replayed["id"]) > int(first_id)
            assert json.loads(replayed["data"])["type"] == "account.password_reset"

        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/v1/notifications/stream")).status_code == 401
            ticket = (await http.post("/v1/notifications/stream-ticket",
                                      headers=member.headers)).json()
            assert ticket["expiresIn"] == 60
        async with sse(base, f"/v1/notifications/stream?ticket={ticket['ticket']}", {}) as stream:
            await reset_request(base, tenant.slug, member.email)
            assert json.loads((await next_event(stream))["data"])["type"] == \
                "account.password_reset"
        async with httpx.AsyncClient(base_url=base) as http:  # single use
            reused = await http.get(f"/v1/notifications/stream?ticket={ticket['ticket']}")
            assert reused.status_code == 401


async def test_websocket_auth_and_push(database_url: str, tmp_path: Path) -> None:
    async with live_server(database_url, settings_for(tmp_path)) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            tenant = await create_tenant(http)
            member = await add_user(http, tenant, "MEMBER")
        assert member.email is not None
        ws_url = base.replace("http://", "ws://") + "/v1/notifications/ws"
        async with websockets.connect(ws_url) as ws:
            await ws.send(json.dumps({"token": "not-a-token"}))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), GUARD)
            assert ws.close_code == 4401
        async with websockets.connect(ws_url) as ws:  # says nothing: closed after 5 s
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), GUARD)
            assert ws.close_code == 4401
        async with websockets.connect(ws_url) as ws:
            await ws.send(json.dumps({"token": member.token}))
            assert json.loads(await asyncio.wait_for(ws.recv(), GUARD)) == {"event": "ready"}
            await reset_request(base, tenant.slug, member.email)
            pushed = json.loads(await asyncio.wait_for(ws.recv(), GUARD))
            assert pushed["event"] == "notification"
            assert pushed["data"]["type"] == "account.password_reset"


@contextmanager
def api_process(database_url: str, data_dir: Path, extra: dict[str, str]) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": app_url(database_url),
           "PANTHERAHIVE_DATA_DIR": str(data_dir),
           "PANTHERAHIVE_JWT_SECRET": "two-process-secret-" + "y" * 32,
           # one key ring for both, as a fleet shares one (each data dir would make its own)
           "PANTHERAHIVE_SIGNING_KEYS_DIR": str(data_dir.parent / "keys"),
           "PANTHERAHIVE_ARGON2_TIME_COST": "1", "PANTHERAHIVE_ARGON2_MEMORY_KIB": "1024",
           "PANTHERAHIVE_ARGON2_PARALLELISM": "1", "PANTHERAHIVE_LOG_LEVEL": "warning",
           "PANTHERAHIVE_NOTIFICATIONS_WORKER_ENABLED": "false",
           "PANTHERAHIVE_BUS_RUN_CONSUMERS": "false", **extra}
    env.pop("REDIS_URL", None) if "REDIS_URL" not in extra else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "pantherahive.main:app_from_env", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(20)


async def _across(database_url: str, tmp: Path, extra: dict[str, str]) -> None:
    with api_process(database_url, tmp / "a", extra) as one, \
            api_process(database_url, tmp / "b", extra) as two:
        async with httpx.AsyncClient(base_url=one) as http:
            tenant = await create_tenant(http)
            member = await add_user(http, tenant, "MEMBER")
        assert member.email is not None
        async with sse(two, "/v1/notifications/stream", member.headers) as stream:
            await reset_request(one, tenant.slug, member.email)  # created by process one
            frame = await next_event(stream)                     # seen on process two
            assert json.loads(frame["data"])["type"] == "account.password_reset"


async def test_two_api_processes_share_notifications_via_postgres(
    database_url: str, tmp_path: Path
) -> None:
    await _across(database_url, tmp_path, {})


async def test_two_app_instances_share_notifications_via_redis(
    database_url: str, tmp_path: Path
) -> None:
    """REDIS_URL mode: two app instances (each with its own hub and Redis subscription, in
    this process to keep the suite fast); a notification made by one reaches the other."""
    with redis_server() as url:
        settings = settings_for(tmp_path, redis_url=url)
        async with live_server(database_url, settings) as one, \
                live_server(database_url, settings) as two:
            async with httpx.AsyncClient(base_url=one) as http:
                tenant = await create_tenant(http)
                member = await add_user(http, tenant, "MEMBER")
            assert member.email is not None
            async with sse(two, "/v1/notifications/stream", member.headers) as stream:
                await reset_request(one, tenant.slug, member.email)
                frame = await next_event(stream)
                assert json.loads(frame["data"])["type"] == "account.password_reset"
