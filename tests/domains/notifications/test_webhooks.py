"""Webhooks against a local receiver: the signature recomputed here, event id header,
delivery log, redelivery, secret rotation (both signatures), retries then auto-disable
with a notification to ADMINs, and SSRF refusal with the development setting off."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import httpx
import pytest

from pantherahive.domains.notifications.errors import UnsafeWebhookUrl
from pantherahive.domains.notifications.webhooks.service import WebhookService, check_url
from tests.conftest import TenantHandle, add_user, create_tenant
from tests.domains.notifications.conftest import (
    Receiver,
    notifications_of,
    platform,
    process_events,
)
from tests.support.db import database_url
from tests.support.servers import owner_connection


def signatures(header: str) -> tuple[int, list[str]]:
    parts = [p.split("=", 1) for p in header.split(",")]
    stamp = int(next(v for k, v in parts if k == "t"))
    return stamp, [v for k, v in parts if k == "v1"]


def expected(secret: str, stamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()


async def _run(napp: httpx.AsyncClient, tenant: TenantHandle) -> None:
    await process_events(napp)
    await platform(napp).notifications.worker.run_once(tenant_id=uuid.UUID(tenant.id))


async def test_signed_delivery_log_redeliver_and_rotation(
    napp: httpx.AsyncClient, receiver: Receiver
) -> None:
    tenant = await create_tenant(napp)
    admin = tenant.admin.headers
    created = await napp.post("/v1/webhooks", headers=admin, json={
        "url": receiver.url + "/hook", "events": ["user.created"]})
    assert created.status_code == 201, created.text
    hook = created.json()
    secret = hook["secret"]
    assert secret.startswith("whsec_")
    shown = await napp.get(f"/v1/webhooks/{hook['id']}", headers=admin)
    assert "secret" not in shown.json()
    listed = await napp.get("/v1/webhooks", headers=admin)
    assert [h["id"] for h in listed.json()["items"]] == [hook["id"]]

    user = await add_user(napp, tenant, "MEMBER")
    await _run(napp, tenant)
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert (request.method, request.path) == ("POST", "/hook")
    envelope = json.loads(request.body)
    assert envelope["type"] == "user.created"
    assert envelope["subject"] == {"type": "user", "id": user.id}
    assert request.headers["x-pantherahive-event-id"] == envelope["id"]
    stamp, sigs = signatures(request.headers["x-pantherahive-signature"])
    assert sigs == [expected(secret, stamp, request.body)]

    log = (await napp.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=admin)).json()
    assert len(log["items"]) == 1
    entry = log["items"][0]
    assert (entry["status"], entry["responseStatus"], entry["attempts"]) == ("sent", 200, 1)
    assert entry["durationMs"] is not None

    again = await napp.post(
        f"/v1/webhooks/{hook['id']}/deliveries/{entry['id']}/redeliver", headers=admin)
    assert again.status_code == 202
    assert again.json()["redeliveryOf"] == entry["id"]
    await _run(napp, tenant)
    assert len(receiver.requests) == 2
    assert receiver.requests[1].headers["x-pantherahive-event-id"] == envelope["id"]

    rotated = await napp.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=admin)
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != secret
    await add_user(napp, tenant, "MEMBER")
    await _run(napp, tenant)
    last = receiver.requests[-1]
    stamp, sigs = signatures(last.headers["x-pantherahive-signature"])
    assert sigs == [expected(new_secret, stamp, last.body), expected(secret, stamp, last.body)]

    # ADMIN only; other tenants see nothing
    member_call = await napp.get("/v1/webhooks", headers=user.headers)
    assert member_call.status_code == 403
    other = await create_tenant(napp)
    assert (await napp.get(f"/v1/webhooks/{hook['id']}",
                           headers=other.admin.headers)).status_code == 404
    assert (await napp.delete(f"/v1/webhooks/{hook['id']}", headers=admin)).status_code == 204
    assert (await napp.get(f"/v1/webhooks/{hook['id']}", headers=admin)).status_code == 404


async def test_failures_retry_then_disable_and_notify_admins(
    napp: httpx.AsyncClient, receiver: Receiver
) -> None:
    tenant = await create_tenant(napp)
    admin = tenant.admin.headers
    hook = (await napp.post("/v1/webhooks", headers=admin, json={
        "url": receiver.url + "/down", "events": ["*"]})).json()
    receiver.script = [(500, 0.0)] * 20
    # two events, each failing its 3 attempts (backoff 0 in these tests) → disabled after 2
    await add_user(napp, tenant, "MEMBER")
    await add_user(napp, tenant, "MEMBER")
    await process_events(napp)
    worker = platform(napp).notifications.worker
    for _ in range(4):
        await worker.run_once(tenant_id=uuid.UUID(tenant.id))
    log: dict[str, Any] = (await napp.get(f"/v1/webhooks/{hook['id']}/deliveries?limit=200",
                                          headers=admin)).json()
    failed = [d for d in log["items"] if d["status"] == "failed"]
    assert len(failed) >= 2
    assert failed[0]["attempts"] == 3
    assert failed[0]["responseStatus"] == 500
    assert "500" in failed[0]["lastError"]
    state = (await napp.get(f"/v1/webhooks/{hook['id']}", headers=admin)).json()
    assert state["enabled"] is False
    assert "in a row failed" in state["disabledReason"]
    disabled = await notifications_of(napp, admin, "webhook.disabled")
    assert [n["data"]["webhookId"] for n in disabled] == [hook["id"]]
    # re-enabling resets the count
    enabled = await napp.patch(f"/v1/webhooks/{hook['id']}", headers=admin,
                               json={"enabled": True})
    assert enabled.json()["enabled"] is True
    assert enabled.json()["consecutiveFailures"] == 0


async def test_ssrf_refused_with_the_setting_off(client: httpx.AsyncClient) -> None:
    tenant = await create_tenant(client)  # the shared app: private addresses not allowed
    admin = tenant.admin.headers
    for url in ("https://127.0.0.1/hook", "https://localhost:8443/x", "https://10.1.2.3/",
                "https://169.254.169.254/latest/meta-data", "https://[::1]/",
                "http://example.com/plain-http"):
        refused = await client.post("/v1/webhooks", headers=admin,
                                    json={"url": url, "events": ["task.created"]})
        assert refused.status_code == 422, url
        assert refused.json()["errors"][0]["field"] == "url"
    with pytest.raises(UnsafeWebhookUrl):
        await check_url("https://user:pw@example.com/", allow_private=False)
    bad_events = await client.post("/v1/webhooks", headers=admin,
                                   json={"url": "https://127.0.0.1/", "events": []})
    assert bad_events.status_code == 422


async def test_undecryptable_secret_fails_the_delivery_with_the_reason(
    napp: httpx.AsyncClient, receiver: Receiver
) -> None:
    """The key material changed since the secret was stored: the delivery can never be
    signed, so it ends failed at once instead of being re-claimed forever."""
    tenant = await create_tenant(napp)
    hook = (await napp.post("/v1/webhooks", headers=tenant.admin.headers, json={
        "url": receiver.url + "/hook", "events": ["user.created"]})).json()
    foreign = WebhookService(key_material="another-key-" + "z" * 40, allow_private=True)
    owner = await owner_connection(database_url())
    try:
        await owner.execute("UPDATE notifications.webhooks SET secret_enc = $1 WHERE id = $2",
                            foreign.encrypt("whsec_other"), uuid.UUID(hook["id"]))
    finally:
        await owner.close()
    await add_user(napp, tenant, "MEMBER")
    await _run(napp, tenant)
    # not claimed again
    await platform(napp).notifications.worker.run_once(tenant_id=uuid.UUID(tenant.id))
    log = (await napp.get(f"/v1/webhooks/{hook['id']}/deliveries",
                          headers=tenant.admin.headers)).json()["items"]
    assert [(d["status"], d["attempts"]) for d in log] == [("failed", 1)]
    assert "cannot be decrypted" in log[0]["lastError"]
    assert receiver.requests == []
