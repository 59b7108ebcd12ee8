"""Notifications' Prometheus metrics move with what happens: notifications created by type,
channel deliveries and webhook deliveries by outcome, open SSE and WebSocket streams."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import add_user, create_tenant
from tests.domains.notifications.conftest import (
    Receiver,
    live_server,
    platform,
    process_events,
    settings_for,
)
from tests.domains.notifications.test_realtime import GUARD, sse


async def _sample(app_client: httpx.AsyncClient, name: str, **labels: str) -> float:
    """The current value of one sample on /metrics (0 when absent)."""
    response = await app_client.get("/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def test_creation_and_delivery_counters_move(
    napp: httpx.AsyncClient, receiver: Receiver
) -> None:
    created = await _sample(napp, "notifications_created_total", type="account.welcome")
    emails = await _sample(napp, "notification_delivery_attempts_total", channel="email",
                           outcome="sent")
    hooks = await _sample(napp, "webhook_delivery_attempts_total", outcome="sent")
    hooks_retried = await _sample(napp, "webhook_delivery_attempts_total", outcome="retried")

    tenant = await create_tenant(napp)
    ok = (await napp.post("/v1/webhooks", headers=tenant.admin.headers, json={
        "url": receiver.url + "/ok", "events": ["user.created"]})).json()
    receiver.script = [(200, 0.0), (503, 0.0)]
    await add_user(napp, tenant, "MEMBER")
    await add_user(napp, tenant, "MEMBER")
    await process_events(napp)
    await platform(napp).notifications.worker.run_once(tenant_id=uuid.UUID(tenant.id))

    assert await _sample(napp, "notifications_created_total",
                         type="account.welcome") >= created + 2
    # without SMTP configured the email goes to the log and counts as sent
    assert await _sample(napp, "notification_delivery_attempts_total", channel="email",
                         outcome="sent") >= emails + 2
    # (>=: the counters are process-wide; other apps of this test session count into them)
    assert await _sample(napp, "webhook_delivery_attempts_total", outcome="sent") >= hooks + 1
    assert await _sample(napp, "webhook_delivery_attempts_total",
                         outcome="retried") >= hooks_retried + 1
    assert (await napp.delete(f"/v1/webhooks/{ok['id']}",
                              headers=tenant.admin.headers)).status_code == 204


async def test_open_stream_gauges(napp: httpx.AsyncClient, database_url: str,
                                  tmp_path: Path) -> None:
    """The live server runs in this process, so its gauges are on napp's /metrics too."""
    async with live_server(database_url, settings_for(tmp_path)) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            tenant = await create_tenant(http)
            member = await add_user(http, tenant, "MEMBER")
        sse_before = await _sample(napp, "notification_streams_open", kind="sse")
        ws_before = await _sample(napp, "notification_streams_open", kind="ws")
        ws_url = base.replace("http://", "ws://") + "/v1/notifications/ws"
        async with sse(base, "/v1/notifications/stream", member.headers), \
                websockets.connect(ws_url) as ws:
            await ws.send(json.dumps({"token": member.token}))
            assert json.loads(await asyncio.wait_for(ws.recv(), GUARD)) == {"event": "ready"}
            assert await _sample(napp, "notification_streams_open",
                                 kind="sse") == sse_before + 1
            assert await _sample(napp, "notification_streams_open", kind="ws") == ws_before + 1
        deadline = asyncio.get_running_loop().time() + GUARD
        while asyncio.get_running_loop().time() < deadline:  # the server notices they left
            if (await _sample(napp, "notification_streams_open", kind="sse") == sse_before
                    and await _sample(napp, "notification_streams_open", kind="ws") == ws_before):
                break
            await asyncio.sleep(0.05)
        assert await _sample(napp, "notification_streams_open", kind="sse") == sse_before
        assert await _sample(napp, "notification_streams_open", kind="ws") == ws_before
