"""The Users permission table of API.md, enumerated: role x action x target -> status."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import PASSWORD, TenantHandle, add_user, unique
from tests.support.db import outbox_types

ROLES = ("ADMIN", "MANAGER", "MEMBER")

# (action, target, {role: expected status}); target "self" or "other" (a fresh MEMBER).
MATRIX: list[tuple[str, str, dict[str, int]]] = [
    ("get_me", "self", {"ADMIN": 200, "MANAGER": 200, "MEMBER": 200}),
    ("list", "other", {"ADMIN": 200, "MANAGER": 200, "MEMBER": 200}),
    ("get", "other", {"ADMIN": 200, "MANAGER": 200, "MEMBER": 200}),
    ("create", "other", {"ADMIN": 201, "MANAGER": 403, "MEMBER": 403}),
    ("patch_names", "self", {"ADMIN": 200, "MANAGER": 200, "MEMBER": 200}),
    ("patch_email", "self", {"ADMIN": 200, "MANAGER": 200, "MEMBER": 200}),
    ("patch_names", "other", {"ADMIN": 200, "MANAGER": 403, "MEMBER": 403}),
    ("patch_email", "other", {"ADMIN": 200, "MANAGER": 403, "MEMBER": 403}),
    ("patch_role", "self", {"ADMIN": 409, "MANAGER": 403, "MEMBER": 403}),
    ("patch_role", "other", {"ADMIN": 200, "MANAGER": 403, "MEMBER": 403}),
    ("patch_status", "self", {"ADMIN": 409, "MANAGER": 403, "MEMBER": 403}),
    ("patch_status", "other", {"ADMIN": 200, "MANAGER": 403, "MEMBER": 403}),
    ("delete", "self", {"ADMIN": 409, "MANAGER": 403, "MEMBER": 403}),
    ("delete", "other", {"ADMIN": 204, "MANAGER": 403, "MEMBER": 403}),
]


async def _perform(
    client: httpx.AsyncClient, action: str, headers: dict[str, str], target_id: str
) -> httpx.Response:
    url = f"/v1/users/{target_id}"
    if action == "get_me":
        return await client.get("/v1/users/me", headers=headers)
    if action == "list":
        return await client.get("/v1/users", headers=headers)
    if action == "get":
        return await client.get(url, headers=headers)
    if action == "create":
        name = unique("new")
        return await client.post(
            "/v1/users",
            headers=headers,
            json={"username": name, "password": PASSWORD, "role": "MEMBER"},
        )
    if action == "delete":
        return await client.delete(url, headers=headers)
    body = {
        "patch_names": {"firstName": "Ada", "lastName": "Lovelace"},
        "patch_email": {"email": f"{unique('mail')}@example.org"},
        "patch_role": {"role": "MANAGER"},
        "patch_status": {"status": "INACTIVE"},
    }[action]
    return await client.patch(url, headers=headers, json=body)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("action", "target", "expected"), MATRIX, ids=lambda v: str(v))
async def test_user_permission_matrix(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    role: str,
    action: str,
    target: str,
    expected: dict[str, int],
) -> None:
    actor = tenant.users[role]
    other = await add_user(client, tenant, "MEMBER")
    target_id = actor.id if target == "self" else other.id
    response = await _perform(client, action, actor.headers, target_id)
    assert response.status_code == expected[role], response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == expected[role]
    if expected[role] == 403:
        assert "authz.denied" in await outbox_types(tenant.id)


async def test_forbidden_change_leaves_the_user_unchanged(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    member = tenant.users["MEMBER"]
    response = await client.patch(
        f"/v1/users/{member.id}", headers=member.headers, json={"role": "ADMIN", "firstName": "X"}
    )
    assert response.status_code == 403
    me = (await client.get("/v1/users/me", headers=member.headers)).json()
    assert me["role"] == "MEMBER"
    assert me["firstName"] is None


async def test_second_admin_can_be_demoted_but_not_the_last(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    admin = tenant.admin
    second = await add_user(client, tenant, "ADMIN")
    demote = await client.patch(
        f"/v1/users/{second.id}", headers=admin.headers, json={"role": "MEMBER"}
    )
    assert demote.status_code == 200
    assert demote.json()["role"] == "MEMBER"
    last = await client.patch(
        f"/v1/users/{admin.id}", headers=admin.headers, json={"role": "MEMBER"}
    )
    assert last.status_code == 409
    assert last.json()["type"].endswith("/last-admin")


async def test_two_admins_demoting_each_other_concurrently_leave_one_admin(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    import asyncio

    first = tenant.admin
    second = await add_user(client, tenant, "ADMIN")
    results = await asyncio.gather(
        client.patch(f"/v1/users/{second.id}", headers=first.headers, json={"role": "MEMBER"}),
        client.patch(f"/v1/users/{first.id}", headers=second.headers, json={"role": "MEMBER"}),
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses in ([200, 401], [200, 409]), statuses
    admins = await client.get(
        "/v1/users",
        headers=first.headers if results[0].status_code == 200 else second.headers,
        params={"role": "ADMIN", "status": "ACTIVE"},
    )
    assert len(admins.json()["items"]) == 1


async def test_duplicate_username_and_email_are_409(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    member = tenant.users["MEMBER"]
    for body in (
        {"username": member.username.upper(), "password": PASSWORD, "role": "MEMBER"},
        {
            "username": unique("x"),
            "password": PASSWORD,
            "role": "MEMBER",
            "email": (member.email or "").upper(),
        },
    ):
        response = await client.post("/v1/users", headers=tenant.admin.headers, json=body)
        assert response.status_code == 409, response.text
    clash = await client.patch(
        f"/v1/users/{tenant.users['MANAGER'].id}",
        headers=tenant.admin.headers,
        json={"email": member.email},
    )
    assert clash.status_code == 409


async def test_list_filters_and_prefix_search(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    headers = tenant.admin.headers
    managers = (await client.get("/v1/users", headers=headers, params={"role": "MANAGER"})).json()
    assert [u["username"] for u in managers["items"]] == [tenant.users["MANAGER"].username]
    prefix = tenant.users["MEMBER"].username[:8].upper()
    found = (await client.get("/v1/users", headers=headers, params={"q": prefix})).json()
    assert tenant.users["MEMBER"].username in [u["username"] for u in found["items"]]
    none = (await client.get("/v1/users", headers=headers, params={"q": "%"})).json()
    assert none["items"] == []
    bad = await client.get("/v1/users", headers=headers, params={"role": "OWNER"})
    assert bad.status_code == 422


async def test_paging_users_returns_each_once(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    for _ in range(5):
        await add_user(client, tenant, "MEMBER")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/users", headers=tenant.admin.headers, params=params)).json()
        seen += [u["id"] for u in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 8
    garbage = await client.get(
        "/v1/users", headers=tenant.admin.headers, params={"cursor": "not-a-cursor"}
    )
    assert garbage.status_code == 422
    for limit in (0, 201):
        out = await client.get("/v1/users", headers=tenant.admin.headers, params={"limit": limit})
        assert out.status_code == 422


async def test_unknown_fields_and_bad_values_are_422(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    headers = tenant.admin.headers
    for body in (
        {"username": unique("u"), "password": PASSWORD, "role": "MEMBER", "isRoot": True},
        {"username": unique("u"), "password": "short", "role": "MEMBER"},
        {"username": unique("u"), "password": "x" * 65, "role": "MEMBER"},
        {"username": unique("u"), "password": PASSWORD, "role": "GOD"},
        {"username": unique("u"), "password": PASSWORD, "role": "MEMBER", "email": "nope"},
    ):
        response = await client.post("/v1/users", headers=headers, json=body)
        assert response.status_code == 422, body
        assert response.json()["errors"], response.text
    null_role = await client.patch(
        f"/v1/users/{tenant.users['MEMBER'].id}", headers=headers, json={"role": None}
    )
    assert null_role.status_code == 422
