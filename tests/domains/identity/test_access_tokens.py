"""Personal access tokens end to end: made once, shown once, stored hashed, limited by their
scopes and by their user's live role, revoked at once, audited with the token named."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from pantherahive.consumers import all_consumers
from pantherahive.core.clock import frozen
from pantherahive.infra.bus.embedded import drain
from tests.conftest import Actor, TenantHandle, add_user, create_tenant, unique
from tests.support.db import outbox
from tests.support.servers import owner_connection

PAT_SHAPE = re.compile(r"^ph_pat_[0-9a-f]{40}_[0-9a-f]{32}$")


async def make_pat(
    client: httpx.AsyncClient, actor: Actor, scopes: list[str], **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/users/me/tokens", headers=actor.headers,
        json={"name": unique("pat"), "scopes": scopes, **fields},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_token_is_shown_once_and_stored_hashed(
    client: httpx.AsyncClient, tenant: TenantHandle, database_url: str
) -> None:
    manager = tenant.users["MANAGER"]
    response = await client.post(
        "/v1/users/me/tokens", headers=manager.headers,
        json={"name": "ci", "scopes": ["tasks:read", "projects:read", "tasks:read"]},
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    created = response.json()
    assert set(created) == {"id", "userId", "name", "scopes", "prefix", "expiresAt",
                            "lastUsedAt", "createdAt", "token"}
    assert PAT_SHAPE.match(created["token"])
    assert created["token"].startswith(created["prefix"])
    assert created["scopes"] == ["projects:read", "tasks:read"]
    assert created["userId"] == manager.id
    assert created["expiresAt"] is None
    assert created["lastUsedAt"] is None

    listed = (await client.get("/v1/users/me/tokens", headers=manager.headers)).json()
    assert [item["id"] for item in listed["items"]] == [created["id"]]
    assert "token" not in listed["items"][0]
    assert listed["nextCursor"] is None

    conn = await owner_connection(database_url)
    try:
        stored = await conn.fetchval(
            "SELECT token_hash FROM identity.access_tokens WHERE id = $1", created["id"]
        )
    finally:
        await conn.close()
    assert bytes(stored) == hashlib.sha256(created["token"].encode()).digest()


async def test_a_token_works_within_its_scopes_and_names_the_one_it_lacks(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    manager = tenant.users["MANAGER"]
    pat = await make_pat(client, manager, ["projects:read"])
    ok = await client.get("/v1/projects", headers=bearer(pat["token"]))
    assert ok.status_code == 200, ok.text
    assert "ratelimit-limit" in ok.headers  # spends its user's budget

    refused = await client.post("/v1/projects", headers=bearer(pat["token"]),
                                json={"name": unique("p")})
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "projects:write" in refused.json()["detail"]
    events = await outbox(client, tenant.id, subject_id=pat["id"])
    assert [e["type"] for e in events] == ["authz.denied"]
    assert events[0]["data"]["missingScope"] == "projects:write"
    assert events[0]["data"]["viaToken"] == pat["id"]


async def test_admin_scope_covers_everything_the_role_allows(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    pat = await make_pat(client, tenant.admin, ["admin"])
    for path in ("/v1/projects", "/v1/webhooks", "/v1/audit-events", "/v1/tokens"):
        response = await client.get(path, headers=bearer(pat["token"]))
        assert response.status_code == 200, (path, response.text)


async def test_scopes_never_exceed_the_role(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    member = tenant.users["MEMBER"]
    for scopes in (["admin"], ["audit:read"], ["tasks:read", "admin"]):
        response = await client.post(
            "/v1/users/me/tokens", headers=member.headers,
            json={"name": "too much", "scopes": scopes},
        )
        assert response.status_code == 403, response.text
    assert (await client.get("/v1/users/me/tokens", headers=member.headers)).json()["items"] == []
    # users:write is the member's, but the role still decides: no user creation.
    pat = await make_pat(client, member, ["users:write", "users:read"])
    create = await client.post("/v1/users", headers=bearer(pat["token"]),
                               json={"username": unique("u"), "password": "long-enough-1",
                                     "role": "MEMBER"})
    assert create.status_code == 403
    own = await client.patch(f"/v1/users/{member.id}", headers=bearer(pat["token"]),
                             json={"firstName": "Scripted"})
    assert own.status_code == 200, own.text


async def test_a_demoted_admins_admin_token_shrinks_to_the_new_role(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    second = await add_user(client, tenant, "ADMIN")
    pat = await make_pat(client, second, ["admin"])
    assert (await client.get("/v1/webhooks", headers=bearer(pat["token"]))).status_code == 200
    demote = await client.patch(f"/v1/users/{second.id}", headers=tenant.admin.headers,
                                json={"role": "MEMBER"})
    assert demote.status_code == 200
    assert (await client.get("/v1/webhooks", headers=bearer(pat["token"]))).status_code == 403
    assert (await client.get("/v1/projects", headers=bearer(pat["token"]))).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/users/me/tokens"), ("POST", "/v1/users/me/tokens"),
     ("POST", "/v1/users/me/password"), ("POST", "/v1/notifications/stream-ticket")],
)
async def test_session_only_routes_refuse_every_token(
    client: httpx.AsyncClient, tenant: TenantHandle, method: str, path: str
) -> None:
    pat = await make_pat(client, tenant.admin, ["admin"])
    response = await client.request(method, path, headers=bearer(pat["token"]),
                                     json={"name": "minted", "scopes": ["admin"]})
    assert response.status_code == 403, response.text
    assert "cannot be used here" in response.json()["detail"]


async def test_revoking_stops_the_token_at_once(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    member = tenant.users["MEMBER"]
    pat = await make_pat(client, member, ["tasks:read"])
    assert (await client.get("/v1/users/me/tasks", headers=bearer(pat["token"]))).status_code == 200
    other = await make_pat(client, tenant.users["MANAGER"], ["tasks:read"])
    # Another user's token is not one of "my tokens".
    gone = await client.delete(f"/v1/users/me/tokens/{other['id']}", headers=member.headers)
    assert gone.status_code == 404
    revoke = await client.delete(f"/v1/users/me/tokens/{pat['id']}", headers=member.headers)
    assert revoke.status_code == 204
    after = await client.get("/v1/users/me/tasks", headers=bearer(pat["token"]))
    assert after.status_code == 401
    assert after.headers["www-authenticate"].startswith("Bearer")
    again = await client.delete(f"/v1/users/me/tokens/{pat['id']}", headers=member.headers)
    assert again.status_code == 404
    assert (await client.get("/v1/users/me/tokens", headers=member.headers)).json()["items"] == []


async def test_admins_list_and_revoke_the_tenants_tokens(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    member, manager = tenant.users["MEMBER"], tenant.users["MANAGER"]
    mine = await make_pat(client, member, ["tasks:read"])
    theirs = await make_pat(client, manager, ["projects:read"])
    listed = await client.get("/v1/tokens", headers=tenant.admin.headers)
    assert listed.status_code == 200
    assert {i["id"] for i in listed.json()["items"]} == {mine["id"], theirs["id"]}
    narrowed = await client.get(f"/v1/tokens?userId={member.id}", headers=tenant.admin.headers)
    assert [i["id"] for i in narrowed.json()["items"]] == [mine["id"]]
    assert (await client.get("/v1/tokens", headers=member.headers)).status_code == 403
    refused = await client.delete(f"/v1/tokens/{theirs['id']}", headers=member.headers)
    assert refused.status_code == 403
    revoke = await client.delete(f"/v1/tokens/{mine['id']}", headers=tenant.admin.headers)
    assert revoke.status_code == 204
    assert (await client.get("/v1/users/me/tasks",
                             headers=bearer(mine["token"]))).status_code == 401


async def test_another_tenants_token_is_not_found(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    elsewhere = await create_tenant(client)
    foreign = await make_pat(client, elsewhere.admin, ["tasks:read"])
    response = await client.delete(f"/v1/tokens/{foreign['id']}", headers=tenant.admin.headers)
    assert response.status_code == 404
    listed = await client.get("/v1/tokens", headers=tenant.admin.headers)
    assert foreign["id"] not in {i["id"] for i in listed.json()["items"]}


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/users/me/tokens"), ("POST", "/v1/users/me/tokens"),
     ("DELETE", "/v1/users/me/tokens/00000000-0000-0000-0000-000000000001"),
     ("GET", "/v1/tokens"), ("DELETE", "/v1/tokens/00000000-0000-0000-0000-000000000001")],
)
async def test_every_token_route_needs_authentication(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json={"name": "x", "scopes": ["admin"]})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "token",
    ["ph_pat_", "ph_pat_" + "0" * 40 + "_" + "0" * 32, "ph_pat_" + "g" * 40 + "_" + "z" * 32],
)
async def test_malformed_or_unknown_tokens_are_401(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get("/v1/projects", headers=bearer(token))
    assert response.status_code == 401


async def test_expiry(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    admin = tenant.admin
    past = await client.post("/v1/users/me/tokens", headers=admin.headers, json={
        "name": "late", "scopes": ["tasks:read"], "expiresAt": "2001-01-01T00:00:00Z"})
    assert past.status_code == 422
    assert past.json()["errors"][0]["field"] == "expiresAt"
    expires = datetime.now(UTC) + timedelta(days=1)
    pat = await make_pat(client, admin, ["tasks:read"], expiresAt=expires.isoformat())
    assert (await client.get("/v1/users/me/tasks", headers=bearer(pat["token"]))).status_code == 200
    with frozen(lambda: expires + timedelta(seconds=1)):
        late = await client.get("/v1/users/me/tasks", headers=bearer(pat["token"]))
    assert late.status_code == 401


async def test_last_used_is_kept_to_the_minute(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    pat = await make_pat(client, tenant.admin, ["tasks:read"])
    start = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)

    async def use_at(moment: datetime) -> str | None:
        with frozen(lambda: moment):
            ok = await client.get("/v1/users/me/tasks", headers=bearer(pat["token"]))
            assert ok.status_code == 200
        listed = (await client.get("/v1/users/me/tokens", headers=tenant.admin.headers)).json()
        used: str | None = listed["items"][0]["lastUsedAt"]
        return used

    first = await use_at(start)
    assert first is not None
    assert first.startswith("2031-05-01T12:00:00")
    assert await use_at(start + timedelta(seconds=30)) == first
    later = await use_at(start + timedelta(minutes=2))
    assert later is not None
    assert later.startswith("2031-05-01T12:02:00")


async def test_a_deactivated_users_tokens_stop(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    member = await add_user(client, tenant, "MEMBER")
    pat = await make_pat(client, member, ["tasks:read"])
    deactivate = await client.delete(f"/v1/users/{member.id}", headers=tenant.admin.headers)
    assert deactivate.status_code == 204
    assert (await client.get("/v1/users/me/tasks",
                             headers=bearer(pat["token"]))).status_code == 401
    # Revoked, not merely suspended: reactivating the user does not bring it back.
    listed = await client.get(f"/v1/tokens?userId={member.id}", headers=tenant.admin.headers)
    assert listed.json()["items"] == []
    reactivate = await client.patch(f"/v1/users/{member.id}", headers=tenant.admin.headers,
                                    json={"status": "ACTIVE"})
    assert reactivate.status_code == 200
    assert (await client.get("/v1/users/me/tasks",
                             headers=bearer(pat["token"]))).status_code == 401


async def test_idempotency_keys_work_with_a_token(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    pat = await make_pat(client, tenant.admin, ["projects:write"])
    headers = {**bearer(pat["token"]), "Idempotency-Key": unique("key")}
    body = {"name": unique("p")}
    first = await client.post("/v1/projects", headers=headers, json=body)
    again = await client.post("/v1/projects", headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == first.json()["id"]


async def test_writes_through_a_token_are_audited_with_the_token_named(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    admin = tenant.admin
    pat = await make_pat(client, admin, ["projects:write", "projects:read"])
    made = await client.post("/v1/projects", headers=bearer(pat["token"]),
                             json={"name": unique("p")})
    assert made.status_code == 201
    await client.delete(f"/v1/users/me/tokens/{pat['id']}", headers=admin.headers)
    await drain(client.app.state.platform.db, all_consumers())  # type: ignore[attr-defined]

    def events(action: str) -> list[dict[str, Any]]:
        return [e for e in trail if e["action"] == action]

    trail = (await client.get("/v1/audit-events?limit=200", headers=admin.headers)).json()["items"]
    (created,) = events("user.token_created")
    assert created["resourceId"] == admin.id
    assert created["actorId"] == admin.id
    assert pat["token"] not in str(created)
    assert "tokenHash" not in str(created)
    assert created["data"]["tokenId"] == pat["id"]
    (revoked,) = events("user.token_revoked")
    assert revoked["data"]["tokenId"] == pat["id"]
    (project,) = [e for e in events("project.created") if e["resourceId"] == made.json()["id"]]
    assert project["data"] == {"viaToken": pat["id"]}
    assert "viaToken" not in project["changes"]
    found = await client.get(f"/v1/audit-events?q={pat['id']}", headers=admin.headers)
    assert made.json()["id"] in {e["resourceId"] for e in found.json()["items"]}
