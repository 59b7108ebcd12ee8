"""Acceptance: every identity write produces exactly one audit event with its actor, the
request id and the changes — through the real outbox and consumer runtime."""

from __future__ import annotations

from pathlib import Path

import httpx

from pantherahive.domains.audit.handlers import CONSUMERS
from pantherahive.infra.bus.embedded import drain
from tests.conftest import (
    PASSWORD,
    TenantHandle,
    create_tenant,
    make_settings,
    running_app,
    unique,
)
from tests.domains.audit.helpers import app_db


async def trail(client: httpx.AsyncClient, tenant: TenantHandle, **params: str) -> list[dict]:
    await drain(app_db(client), CONSUMERS)
    response = await client.get("/v1/audit-events", headers=tenant.admin.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_create_user_is_audited_once(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    username = unique("dora")
    response = await client.post(
        "/v1/users",
        headers={**tenant.admin.headers, "X-Request-ID": "req-create-user"},
        json={"username": username, "password": PASSWORD, "role": "MEMBER", "firstName": "Dora"},
    )
    assert response.status_code == 201
    user_id = response.json()["id"]
    events = await trail(client, tenant, action="user.created", resourceId=user_id)
    assert len(events) == 1
    event = events[0]
    assert event["actorId"] == tenant.admin.id
    assert event["actorType"] == "user"
    assert event["requestId"] == "req-create-user"
    assert event["resourceType"] == "user"
    assert event["changes"]["username"] == [None, username]
    assert event["changes"]["role"] == [None, "MEMBER"]
    assert "password" not in str(event).lower()
    # Draining again (a redelivery) adds nothing.
    assert len(await trail(client, tenant, action="user.created", resourceId=user_id)) == 1


async def test_patch_user_is_audited_once_with_old_and_new(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    member = tenant.users["MEMBER"]
    response = await client.patch(
        f"/v1/users/{member.id}",
        headers={**tenant.admin.headers, "X-Request-ID": "req-patch-user"},
        json={"firstName": "Renamed"},
    )
    assert response.status_code == 200, response.text
    events = await trail(client, tenant, action="user.updated", resourceId=member.id)
    assert len(events) == 1
    assert events[0]["actorId"] == tenant.admin.id
    assert events[0]["requestId"] == "req-patch-user"
    assert events[0]["changes"] == {"firstName": [None, "Renamed"]}


async def test_login_ok_and_failed_are_audited_once_each(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    member = tenant.users["MEMBER"]
    before_ok = await trail(client, tenant, action="auth.login_succeeded", resourceId=member.id)
    ok = await client.post(
        "/v1/auth/login",
        headers={"X-Request-ID": "req-login-ok"},
        json={"tenant": tenant.slug, "login": member.username, "password": PASSWORD},
    )
    assert ok.status_code == 200
    bad = await client.post(
        "/v1/auth/login",
        headers={"X-Request-ID": "req-login-bad"},
        json={"tenant": tenant.slug, "login": member.username, "password": "wrong-password"},
    )
    assert bad.status_code == 401

    succeeded = await trail(client, tenant, action="auth.login_succeeded", resourceId=member.id)
    assert len(succeeded) == len(before_ok) + 1
    assert succeeded[0]["requestId"] == "req-login-ok"
    assert succeeded[0]["actorId"] == member.id
    assert succeeded[0]["ip"] is not None

    failed = await trail(client, tenant, action="auth.login_failed", resourceId=member.id)
    assert len(failed) == 1
    assert failed[0]["requestId"] == "req-login-bad"
    assert failed[0]["actorType"] == "system"
    assert failed[0]["data"]["reason"] == "bad_credentials"
    assert failed[0]["ip"] is not None


async def test_denied_audit_read_is_itself_audited(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    manager = tenant.users["MANAGER"]
    denied = await client.get(
        "/v1/audit-events", headers={**manager.headers, "X-Request-ID": "req-peek"}
    )
    assert denied.status_code == 403
    events = await trail(client, tenant, action="authz.denied", resourceType="audit")
    assert len(events) == 1
    assert events[0]["actorId"] == manager.id
    assert events[0]["requestId"] == "req-peek"
    assert events[0]["data"] == {"action": "audit.list", "role": "MANAGER"}


async def test_role_change_and_deactivation_are_one_audit_event_each(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    member = tenant.users["MEMBER"]
    promoted = await client.patch(
        f"/v1/users/{member.id}", headers=tenant.admin.headers, json={"role": "MANAGER"}
    )
    assert promoted.status_code == 200
    gone = await client.delete(f"/v1/users/{member.id}", headers=tenant.admin.headers)
    assert gone.status_code == 204
    trail_of_member = [
        e
        for e in await trail(client, tenant, resourceId=member.id)
        if e["action"].startswith("user.") and e["action"] != "user.created"
    ]
    assert sorted(e["action"] for e in trail_of_member) == ["user.deactivated", "user.role_changed"]
    by_action = {e["action"]: e for e in trail_of_member}
    assert by_action["user.role_changed"]["changes"] == {"role": ["MEMBER", "MANAGER"]}
    assert by_action["user.deactivated"]["changes"] == {"status": ["ACTIVE", "INACTIVE"]}


async def test_a_throttled_login_is_audited_as_a_failed_login(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, rate_limit_login_failures="2/5 minutes")
    async with running_app(database_url, settings) as own:
        tenant = await create_tenant(own)
        attempt = {"tenant": tenant.slug, "login": "admin", "password": "wrong-password"}
        for n in range(2):
            bad = await own.post("/v1/auth/login", json=attempt,
                                 headers={"X-Request-ID": f"req-bad-{n}"})
            assert bad.status_code == 401
        throttled = await own.post("/v1/auth/login", json=attempt,
                                   headers={"X-Request-ID": "req-throttled"})
        assert throttled.status_code == 429
        assert "Retry-After" in throttled.headers
        failed = await trail(own, tenant, action="auth.login_failed")
    by_request = {event["requestId"]: event for event in failed}
    assert set(by_request) == {"req-bad-0", "req-bad-1", "req-throttled"}
    event = by_request["req-throttled"]
    assert event["data"]["reason"] == "throttled"
    assert event["resourceId"] == tenant.admin.id
    assert event["actorType"] == "system"
