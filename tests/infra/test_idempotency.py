"""Idempotency-Key: a repeat replays, a concurrent duplicate creates once, a different body
is refused, keys are per user."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import PASSWORD, TenantHandle, unique


async def test_repeat_replays_the_first_response(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    body = {"username": unique("idem"), "password": PASSWORD, "role": "MEMBER"}
    headers = {**tenant.admin.headers, "Idempotency-Key": unique("key")}
    first = await client.post("/v1/users", headers=headers, json=body)
    second = await client.post("/v1/users", headers=headers, json=body)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    changed = await client.post("/v1/users", headers=headers, json={**body, "role": "MANAGER"})
    assert changed.status_code == 422


async def test_twenty_concurrent_duplicates_create_once(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    username = unique("race")
    body = {"username": username, "password": PASSWORD, "role": "MEMBER"}
    headers = {**tenant.admin.headers, "Idempotency-Key": unique("key")}
    answers = await asyncio.gather(
        *(client.post("/v1/users", headers=headers, json=body) for _ in range(20))
    )
    assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    listed = await client.get("/v1/users", headers=tenant.admin.headers, params={"q": username})
    assert len(listed.json()["items"]) == 1


async def test_keys_are_scoped_to_the_calling_user(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    key = unique("shared-key")
    second_admin_body = {"username": unique("adm"), "password": PASSWORD, "role": "ADMIN"}
    made = await client.post("/v1/users", headers=tenant.admin.headers, json=second_admin_body)
    login = await client.post(
        "/v1/auth/login",
        json={"tenant": tenant.slug, "login": second_admin_body["username"], "password": PASSWORD},
    )
    other_headers = {"Authorization": f"Bearer {login.json()['accessToken']}"}
    assert made.status_code == 201
    one = await client.post(
        "/v1/users",
        headers={**tenant.admin.headers, "Idempotency-Key": key},
        json={"username": unique("a"), "password": PASSWORD, "role": "MEMBER"},
    )
    two = await client.post(
        "/v1/users",
        headers={**other_headers, "Idempotency-Key": key},
        json={"username": unique("b"), "password": PASSWORD, "role": "MEMBER"},
    )
    assert one.status_code == two.status_code == 201
    assert one.json()["id"] != two.json()["id"]


async def test_failed_request_keeps_its_answer_and_overlong_key_is_422(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    body = {"username": tenant.users["MEMBER"].username, "password": PASSWORD, "role": "MEMBER"}
    headers = {**tenant.admin.headers, "Idempotency-Key": unique("dup")}
    first = await client.post("/v1/users", headers=headers, json=body)
    again = await client.post("/v1/users", headers=headers, json=body)
    assert first.status_code == again.status_code == 409
    assert again.headers["idempotent-replayed"] == "true"
    long_key = await client.post(
        "/v1/users", headers={**tenant.admin.headers, "Idempotency-Key": "k" * 256}, json=body
    )
    assert long_key.status_code == 422


async def test_signup_replay_returns_the_same_tenant(client: httpx.AsyncClient) -> None:
    slug = unique("signup")
    body = {"name": slug, "slug": slug, "admin": {"username": "root", "password": PASSWORD}}
    headers = {"Idempotency-Key": unique("signup-key")}
    answers = await asyncio.gather(
        *(client.post("/v1/tenants", headers=headers, json=body) for _ in range(5))
    )
    assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
    assert len({a.json()["tenant"]["id"] for a in answers}) == 1
