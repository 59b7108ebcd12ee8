"""SSRF protection of webhooks: IPv6 forms that embed a private IPv4 address, the re-check
at delivery time, DNS rebinding between the check and the connection, redirects, and
PATCH. Host names are answered by a resolver the test controls (the platform's resolver
hook); every connection goes to loopback — the public address in the answers is only ever
checked, never connected to."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pantherahive.domains.notifications.webhooks.egress import refused
from tests.conftest import TenantHandle, add_user, create_tenant, running_app
from tests.domains.notifications.conftest import (
    Receiver,
    platform,
    process_events,
    settings_for,
)

PUBLIC = "93.184.216.34"  # a global address: passes the checks, never connected to


class ScriptedResolver:
    """A DNS server the test controls: each lookup takes the next answer; the last one
    repeats."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture
async def guarded(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An app with the development setting off (private targets refused); its worker is
    driven by the test."""
    settings = settings_for(tmp_path, webhook_allow_private_addresses=False)
    async with running_app(database_url, settings) as app_client:
        yield app_client


def _resolve_with(app_client: httpx.AsyncClient, resolver: ScriptedResolver) -> None:
    platform(app_client).notifications.webhooks.resolver = resolver


async def _deliveries(app_client: httpx.AsyncClient, tenant: TenantHandle,
                      hook_id: str) -> list[dict[str, Any]]:
    response = await app_client.get(f"/v1/webhooks/{hook_id}/deliveries",
                                    headers=tenant.admin.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _hook(app_client: httpx.AsyncClient, tenant: TenantHandle, url: str) -> str:
    created = await app_client.post("/v1/webhooks", headers=tenant.admin.headers,
                                    json={"url": url, "events": ["user.created"]})
    assert created.status_code == 201, created.text
    hook_id: str = created.json()["id"]
    return hook_id


@pytest.mark.parametrize("address", [
    "::127.0.0.1",            # IPv4-compatible
    "::ffff:127.0.0.1",       # IPv4-mapped
    "::ffff:0:7f00:1",        # IPv4-translated
    "64:ff9b::7f00:1",        # NAT64, well-known prefix
    "64:ff9b::a9fe:a9fe",     # NAT64 to the metadata address
    "64:ff9b:1::a00:1",       # local-use NAT64: its target cannot be judged
    "2002:7f00:1::1",         # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",      # 6to4 of 169.254.169.254
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
    "::1", "fe80::1", "fc00::1", "ff02::1",
])
async def test_ipv6_forms_of_private_addresses_are_refused(
    client: httpx.AsyncClient, address: str
) -> None:
    assert refused(ipaddress.ip_address(address))
    tenant = await create_tenant(client)  # the shared app: private targets not allowed
    response = await client.post("/v1/webhooks", headers=tenant.admin.headers,
                                 json={"url": f"https://[{address}]/hook",
                                       "events": ["task.created"]})
    assert response.status_code == 422, address
    assert response.json()["errors"][0]["field"] == "url"


@pytest.mark.parametrize("address", [
    PUBLIC, "2001:4860:4860::8888", "64:ff9b::5db8:d822", "2002:5db8:d822::1",
])
def test_global_addresses_and_their_ipv6_forms_pass(address: str) -> None:
    assert not refused(ipaddress.ip_address(address))


async def test_delivery_connects_only_where_its_own_lookup_was_checked(
    guarded: httpx.AsyncClient, receiver: Receiver
) -> None:
    """DNS rebinding: the name is public when created and when re-checked before the
    delivery, then answers 127.0.0.1. The connection makes its own lookup and checks it,
    so the loopback receiver never hears from the worker."""
    resolver = ScriptedResolver([PUBLIC], [PUBLIC], ["127.0.0.1"])
    _resolve_with(guarded, resolver)
    tenant = await create_tenant(guarded)
    hook = await _hook(guarded, tenant, f"https://rebind.test:{receiver.port}/hook")
    await add_user(guarded, tenant, "MEMBER")
    await process_events(guarded)
    await platform(guarded).notifications.worker.run_once(tenant_id=uuid.UUID(tenant.id))

    [delivery] = await _deliveries(guarded, tenant, hook)
    assert delivery["status"] == "failed"
    assert "loopback, private or reserved" in delivery["lastError"]
    assert receiver.requests == []
    # created, re-checked before sending, then looked up once more by the connection
    assert resolver.lookups == ["rebind.test"] * 3


async def test_delivery_re_checks_the_address(
    guarded: httpx.AsyncClient, receiver: Receiver
) -> None:
    """Valid when created; resolving to a private address at delivery time → failed with
    the reason, nothing sent."""
    _resolve_with(guarded, ScriptedResolver([PUBLIC], ["10.20.30.40"]))
    tenant = await create_tenant(guarded)
    hook = await _hook(guarded, tenant, f"https://moved.test:{receiver.port}/hook")
    await add_user(guarded, tenant, "MEMBER")
    await process_events(guarded)
    await platform(guarded).notifications.worker.run_once(tenant_id=uuid.UUID(tenant.id))
    [delivery] = await _deliveries(guarded, tenant, hook)
    assert (delivery["status"], delivery["attempts"]) == ("failed", 1)
    assert "private" in delivery["lastError"]
    assert receiver.requests == []


async def test_patch_to_a_private_url_is_refused(guarded: httpx.AsyncClient) -> None:
    resolver = ScriptedResolver([PUBLIC], ["192.168.1.5"])
    _resolve_with(guarded, resolver)
    tenant = await create_tenant(guarded)
    hook = await _hook(guarded, tenant, "https://partner.test/hook")
    try:
        for url in ("https://internal.test/hook", "https://10.0.0.1/", "https://[::ffff:a00:1]/",
                    "http://partner.test/plain"):
            patched = await guarded.patch(f"/v1/webhooks/{hook}", headers=tenant.admin.headers,
                                          json={"url": url})
            assert patched.status_code == 422, url
            assert patched.json()["errors"][0]["field"] == "url"
        shown = await guarded.get(f"/v1/webhooks/{hook}", headers=tenant.admin.headers)
        assert shown.json()["url"] == "https://partner.test/hook"
    finally:  # nothing may ever be sent to it
        await guarded.delete(f"/v1/webhooks/{hook}", headers=tenant.admin.headers)


async def test_redirects_are_not_followed(napp: httpx.AsyncClient, receiver: Receiver) -> None:
    inside = Receiver()
    await inside.start()
    try:
        receiver.location = inside.url + "/internal"
        receiver.script = [(302, 0.0)] * 5
        tenant = await create_tenant(napp)
        hook = await _hook(napp, tenant, receiver.url + "/hook")
        await add_user(napp, tenant, "MEMBER")
        await process_events(napp)
        await platform(napp).notifications.worker.run_once(tenant_id=uuid.UUID(tenant.id))
        [delivery] = await _deliveries(napp, tenant, hook)
        assert delivery["status"] == "pending"  # a 3xx is a failed attempt, retried
        assert delivery["responseStatus"] == 302
        assert "302" in delivery["lastError"]
        assert len(receiver.requests) == 1
        assert inside.requests == []
        await napp.delete(f"/v1/webhooks/{hook}", headers=tenant.admin.headers)
    finally:
        await inside.stop()


async def test_the_connection_uses_the_lookup_and_keeps_the_host_name(
    napp: httpx.AsyncClient, receiver: Receiver
) -> None:
    """Development setting on (loopback allowed): the name still goes through the resolver
    hook, and the request still names the host."""
    webhooks = platform(napp).notifications.webhooks
    default = webhooks.resolver
    resolver = ScriptedResolver(["127.0.0.1"])
    webhooks.resolver = resolver
    try:
        tenant = await create_tenant(napp)
        hook = await _hook(napp, tenant, f"http://hooks.partner.test:{receiver.port}/in")
        await add_user(napp, tenant, "MEMBER")
        await process_events(napp)
        await platform(napp).notifications.worker.run_once(tenant_id=uuid.UUID(tenant.id))
    finally:
        webhooks.resolver = default
    [delivery] = await _deliveries(napp, tenant, hook)
    assert delivery["status"] == "sent"
    assert receiver.requests[0].headers["host"] == f"hooks.partner.test:{receiver.port}"
    assert "hooks.partner.test" in resolver.lookups
