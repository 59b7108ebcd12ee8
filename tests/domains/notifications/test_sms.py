"""SMS through the Twilio-compatible adapter against a local HTTP server that also answers
errors and stalls: retried with backoff, then ``sent`` — or ``failed`` with the reason."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx

from pantherahive.domains.notifications.delivery.transports import TwilioSmsTransport
from pantherahive.domains.notifications.delivery.worker import DeliveryWorker
from pantherahive.domains.projects.events import MemberAdded
from tests.conftest import Actor, TenantHandle, add_user, create_tenant
from tests.domains.notifications.conftest import (
    Receiver,
    emit_event,
    platform,
    process_events,
    settings_for,
)

PHONE = "+15551234567"


async def _sms_user(napp: httpx.AsyncClient) -> tuple[TenantHandle, Actor]:
    tenant = await create_tenant(napp)
    member = await add_user(napp, tenant, "MEMBER")
    saved = await napp.put("/v1/notifications/preferences", headers=member.headers, json={
        "phone": PHONE, "types": {"project.member_added": {"sms": True}}})
    assert saved.status_code == 200
    assert saved.json()["phone"] == PHONE
    bad = await napp.put("/v1/notifications/preferences", headers=member.headers,
                         json={"phone": "555-not-e164"})
    assert bad.status_code == 422
    await emit_event(napp, tenant.id, MemberAdded(user_id=member.id, role="EDITOR",
                                                  project_name="Texts"),
                     subject_id=uuid.uuid4(), actor_id=tenant.admin.id)
    await process_events(napp)
    return tenant, member


def _worker(napp: httpx.AsyncClient, tmp: Path, receiver: Receiver) -> tuple[
        DeliveryWorker, TwilioSmsTransport]:
    settings = settings_for(tmp, sms_provider_url=receiver.url, sms_account_sid="AC123",
                            sms_auth_token="tok-456", sms_from="+15550000000",
                            sms_timeout_seconds=0.5)
    transport = TwilioSmsTransport(settings)
    p = platform(napp)
    worker = DeliveryWorker(db=p.db, settings=settings, transports={"sms": transport},
                            service=p.notifications.service, webhooks=p.notifications.webhooks,
                            send_webhooks=False)
    return worker, transport


async def _sms_deliveries(napp: httpx.AsyncClient, tenant: TenantHandle) -> list[dict[str, Any]]:
    response = await napp.get("/v1/notifications/deliveries?limit=200",
                              headers=tenant.admin.headers)
    return [d for d in response.json()["items"] if d["channel"] == "sms"]


async def _drive(napp: httpx.AsyncClient, worker: DeliveryWorker, transport: TwilioSmsTransport,
                 tenant: TenantHandle, rounds: int) -> list[dict[str, Any]]:
    seen = []
    try:
        for _ in range(rounds):
            await worker.run_once(tenant_id=uuid.UUID(tenant.id))
            seen.append((await _sms_deliveries(napp, tenant))[0])
    finally:
        await worker.close()
        await transport.close()
    return seen


async def test_sms_error_then_timeout_then_sent(
    napp: httpx.AsyncClient, receiver: Receiver, tmp_path: Path
) -> None:
    tenant, _ = await _sms_user(napp)
    pending = await _sms_deliveries(napp, tenant)
    assert [(d["recipient"], d["status"], d["templateName"]) for d in pending] == [
        (PHONE, "pending", "notification.sms")]
    receiver.script = [(500, 0.0), (201, 3.0), (201, 0.0)]
    worker, transport = _worker(napp, tmp_path, receiver)
    seen = await _drive(napp, worker, transport, tenant, 3)
    assert [(d["status"], d["attempts"]) for d in seen] == [
        ("pending", 1), ("pending", 2), ("sent", 3)]
    assert "500" in seen[0]["lastError"]
    assert "timed out" in seen[1]["lastError"]
    assert seen[2]["lastError"] is None
    request = receiver.requests[-1]
    assert request.path == "/2010-04-01/Accounts/AC123/Messages.json"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(
        b"AC123:tok-456").decode()
    form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
    assert form["To"] == PHONE
    assert form["From"] == "+15550000000"
    assert "You were added to Texts" in form["Body"]


async def test_sms_keeps_failing_ends_failed(
    napp: httpx.AsyncClient, receiver: Receiver, tmp_path: Path
) -> None:
    tenant, _ = await _sms_user(napp)
    receiver.script = [(503, 0.0)] * 3
    worker, transport = _worker(napp, tmp_path, receiver)
    seen = await _drive(napp, worker, transport, tenant, 3)
    assert [d["status"] for d in seen] == ["pending", "pending", "failed"]
    assert "503" in seen[-1]["lastError"]


async def test_sms_rejected_is_not_retried(
    napp: httpx.AsyncClient, receiver: Receiver, tmp_path: Path
) -> None:
    tenant, _ = await _sms_user(napp)
    receiver.script = [(400, 0.0)]
    worker, transport = _worker(napp, tmp_path, receiver)
    seen = await _drive(napp, worker, transport, tenant, 1)
    assert (seen[0]["status"], seen[0]["attempts"]) == ("failed", 1)
    assert "400" in seen[0]["lastError"]
