"""Fixtures for notifications: an app with its own settings (background workers off, so
each test drives deliveries itself), a local HTTP receiver, event helpers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import uvicorn

from pantherahive.core.events import EventData
from pantherahive.domains.tasks.events import TaskCreated
from pantherahive.infra.bus.embedded import drain
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.db.engine import set_tenant
from pantherahive.settings import Settings
from tests.conftest import make_settings, running_app
from tests.support.servers import app_url, free_port

NOTIFY_SETTINGS: dict[str, Any] = {
    "notifications_worker_enabled": False,
    "bus_run_consumers": False,
    "webhook_allow_private_addresses": True,
    "delivery_max_attempts": 3,
    "delivery_backoff_seconds": 0.0,
    "webhook_disable_after_failures": 2,
    "sse_heartbeat_seconds": 0.5,
}


@pytest.fixture(scope="session")
def notify_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("notify"), **NOTIFY_SETTINGS)


@pytest.fixture(autouse=True)
async def _quiet_shared_worker(client: httpx.AsyncClient) -> AsyncIterator[None]:
    """The session app's background delivery worker would race the workers these tests
    drive (it is configured without SMTP/SMS and refuses private webhook targets)."""
    worker = client.app.state.platform.notifications.worker  # type: ignore[attr-defined]
    await worker.stop()
    yield
    worker.start()


@pytest.fixture(scope="session")
async def napp(database_url: str, notify_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app as notifications tests need it: identity's account messages go through the
    notifications sender (no RecordingSender)."""
    async with running_app(database_url, notify_settings) as app_client:
        yield app_client


def platform(app_client: httpx.AsyncClient) -> Any:
    return app_client.app.state.platform  # type: ignore[attr-defined]


async def process_events(app_client: httpx.AsyncClient) -> None:
    """Run this app's notifications consumer over every event not handled yet."""
    await drain(platform(app_client).db, platform(app_client).notifications.consumers)


async def emit_event(app_client: httpx.AsyncClient, tenant_id: str, event: EventData, *,
                     subject_id: object, actor_id: str | None) -> UUID:
    """Publish another service's event as its producer would (typed, in the outbox)."""
    async with platform(app_client).db.sessions() as session:
        await set_tenant(session, tenant_id)
        event_id = await emit(session, event, subject_id=subject_id, tenant_id=UUID(tenant_id),
                              actor_id=UUID(actor_id) if actor_id else None)
        await session.commit()
    return event_id


def task_created(project_id: UUID, *, title: str, reporter: str, assignee: str | None = None,
                 depends_on: list[str] | None = None) -> TaskCreated:
    return TaskCreated(project_id=project_id, title=title, status="TODO", priority="MEDIUM",
                       assignee_id=assignee, reporter_id=reporter, due_date=None, labels=[],
                       depends_on=depends_on or [])


async def notifications_of(app_client: httpx.AsyncClient, headers: dict[str, str],
                           type_: str | None = None) -> list[dict[str, Any]]:
    response = await app_client.get("/v1/notifications?limit=200", headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return [n for n in items if type_ is None or n["type"] == type_]


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A tiny HTTP/1.1 server: records requests, answers from a script of (status, delay)."""

    requests: list[Received] = field(default_factory=list)
    script: list[tuple[int, float]] = field(default_factory=list)
    location: str | None = None  # sent with 3xx answers
    port: int = 0
    server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await reader.readline()).decode()
            method, path, _ = line.split(" ", 2)
            headers: dict[str, str] = {}
            while True:
                raw = (await reader.readline()).decode()
                if raw in ("\r\n", "\n", ""):
                    break
                key, _, value = raw.partition(":")
                headers[key.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(method, path, headers, body))
            status, delay = self.script.pop(0) if self.script else (200, 0.0)
            if delay:
                await asyncio.sleep(delay)
            payload = b'{"sid": "SM1"}' if status < 300 else b'{"message": "no"}'
            location = (f"Location: {self.location}\r\n"
                        if self.location and 300 <= status < 400 else "")
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{location}"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
            await writer.drain()
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    yield server
    await server.stop()


@contextlib.asynccontextmanager
async def live_server(database_url: str, settings: Settings) -> AsyncIterator[str]:
    """The real app behind a real uvicorn on a free port, in this event loop."""
    from pantherahive.main import create_app

    port = free_port()
    app = create_app(settings, database_url=app_url(database_url))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def settings_for(tmp: Path, **overrides: Any) -> Settings:
    return make_settings(tmp, **{**NOTIFY_SETTINGS, **overrides})
