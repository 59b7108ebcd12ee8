"""Idempotency-Key: a repeat replays, a concurrent duplicate creates once, a different body
is refused, keys are per user."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

import httpx
import orjson

from pantherahive.domains.identity.delivery import RecordingSender
from tests.conftest import PASSWORD, TenantHandle, add_user, unique
from tests.support.db import database_url, outbox, outbox_types
from tests.support.servers import owner_connection


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


# ---- callers without a token: /v1/auth/* and sign-up ------------------------------------


def _from(client: httpx.AsyncClient, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=client.app, client=(ip, 40000))  # type: ignore[attr-defined]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def _owner_fetch(sql: str, *args: object) -> list[Any]:
    conn = await owner_connection(database_url())
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _sessions_of(user_id: str) -> int:
    rows = await _owner_fetch(
        "SELECT count(*) AS n FROM identity.refresh_tokens WHERE user_id = $1", uuid.UUID(user_id)
    )
    return int(rows[0]["n"])


async def test_a_retried_refresh_replays_the_new_pair_and_is_not_reuse(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    member = await add_user(client, tenant, "MEMBER")
    headers = {"Idempotency-Key": unique("refresh")}
    body = {"refreshToken": member.refresh_token}
    first = await client.post("/v1/auth/refresh", headers=headers, json=body)
    retry = await client.post("/v1/auth/refresh", headers=headers, json=body)
    assert first.status_code == retry.status_code == 200, retry.text
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.headers["cache-control"] == "no-store"  # replayed tokens are still tokens
    assert "auth.refresh_reused" not in await outbox_types(tenant.id)
    # the family is alive: the replayed refresh token rotates normally
    onward = await client.post(
        "/v1/auth/refresh", json={"refreshToken": retry.json()["refreshToken"]}
    )
    assert onward.status_code == 200


async def test_a_refresh_retried_while_the_first_is_running_waits_and_replays(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    member = await add_user(client, tenant, "MEMBER")
    headers = {"Idempotency-Key": unique("refresh-race")}
    body = {"refreshToken": member.refresh_token}
    answers = await asyncio.gather(
        *(client.post("/v1/auth/refresh", headers=headers, json=body) for _ in range(6))
    )
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert len({a.json()["refreshToken"] for a in answers}) == 1
    assert "auth.refresh_reused" not in await outbox_types(tenant.id)
    assert await _sessions_of(member.id) == 2  # the login's token and its one successor


async def test_a_retried_login_makes_one_session(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    member = await add_user(client, tenant, "MEMBER")
    before = await _sessions_of(member.id)
    headers = {"Idempotency-Key": unique("login")}
    body = {"tenant": tenant.slug, "login": member.username, "password": PASSWORD}
    first = await client.post("/v1/auth/login", headers=headers, json=body)
    retry = await client.post("/v1/auth/login", headers=headers, json=body)
    assert first.status_code == retry.status_code == 200
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert await _sessions_of(member.id) == before + 1
    succeeded = [
        e for e in await outbox(client, tenant.id, subject_id=member.id)
        if e["type"] == "auth.login_succeeded"
    ]
    assert len(succeeded) == 2  # add_user's login, and this one — not the retry


async def test_a_wrong_password_is_not_replayed_and_leaves_no_key(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    key = unique("wrong")
    body = {"tenant": tenant.slug, "login": "admin", "password": "wrong-password"}
    for _ in range(2):
        answer = await client.post("/v1/auth/login", headers={"Idempotency-Key": key}, json=body)
        assert answer.status_code == 401
        assert "idempotent-replayed" not in answer.headers
    assert await _owner_fetch("SELECT 1 FROM platform.idempotency_keys WHERE key = $1", key) == []


async def test_a_retried_password_reset_sends_one_email(
    client: httpx.AsyncClient, tenant: TenantHandle, sender: RecordingSender
) -> None:
    member = await add_user(client, tenant, "MEMBER")
    headers = {"Idempotency-Key": unique("reset")}
    body = {"tenant": tenant.slug, "email": member.email}
    before = len(sender.sent)
    answers = [
        await client.post("/v1/auth/password-reset", headers=headers, json=body) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert [a.headers.get("idempotent-replayed") for a in answers] == [None, "true", "true"]
    assert len(sender.sent) == before + 1


async def test_callers_without_a_token_are_scoped_by_address(client: httpx.AsyncClient) -> None:
    key = unique("anon-key")

    def signup(slug: str) -> dict[str, Any]:
        return {"name": slug, "slug": slug, "admin": {"username": "root", "password": PASSWORD}}

    async with _from(client, "10.1.0.1") as one, _from(client, "10.1.0.2") as two:
        headers = {"Idempotency-Key": key}
        first = await one.post("/v1/tenants", headers=headers, json=signup(unique("a")))
        other = await two.post("/v1/tenants", headers=headers, json=signup(unique("b")))
        assert first.status_code == other.status_code == 201
        assert first.json()["tenant"]["id"] != other.json()["tenant"]["id"]
        # the same caller reusing its key for another body is refused, as for users
        again = await one.post("/v1/tenants", headers=headers, json=signup(unique("c")))
        assert again.status_code == 422


async def test_stored_answers_with_tokens_are_sealed_and_fingerprints_keyed(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    member = await add_user(client, tenant, "MEMBER")
    key = unique("sealed")
    raw = orjson.dumps({"tenant": tenant.slug, "login": member.username, "password": PASSWORD})
    answer = await client.post(
        "/v1/auth/login",
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
        content=raw,
    )
    assert answer.status_code == 200
    (row,) = await _owner_fetch(
        "SELECT scope, tenant_id, fingerprint, payload FROM platform.idempotency_keys "
        "WHERE key = $1",
        key,
    )
    assert row["scope"] == "ip:127.0.0.1"
    assert row["tenant_id"] is None
    payload = bytes(row["payload"])
    for secret in (answer.json()["accessToken"], answer.json()["refreshToken"]):
        assert secret.encode() not in payload
    # not a plain hash of a body that holds a password (a fast, unsalted password hash)
    assert bytes(row["fingerprint"]) != hashlib.sha256(b"/v1/auth/login\0\0" + raw).digest()
    assert PASSWORD.encode() not in bytes(row["fingerprint"]) + payload


async def test_keys_expire_after_24_hours_and_are_purged(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    member = await add_user(client, tenant, "MEMBER")
    login_key, user_key = unique("old-login"), unique("old-user")
    body = {"tenant": tenant.slug, "login": member.username, "password": PASSWORD}
    first = await client.post("/v1/auth/login", headers={"Idempotency-Key": login_key}, json=body)
    made = await client.post(
        "/v1/users",
        headers={**tenant.admin.headers, "Idempotency-Key": user_key},
        json={"username": unique("u"), "password": PASSWORD, "role": "MEMBER"},
    )
    assert first.status_code == 200
    assert made.status_code == 201
    await _owner_fetch(
        "UPDATE platform.idempotency_keys SET created_at = now() - interval '25 hours' "
        "WHERE key = $1",
        login_key,
    )
    # past 24 hours the key means nothing: the request runs again
    later = await client.post("/v1/auth/login", headers={"Idempotency-Key": login_key}, json=body)
    assert later.status_code == 200
    assert "idempotent-replayed" not in later.headers
    assert later.json()["refreshToken"] != first.json()["refreshToken"]

    await _owner_fetch(
        "UPDATE platform.idempotency_keys SET created_at = now() - interval '25 hours' "
        "WHERE key = ANY($1::text[])",
        [login_key, user_key],
    )
    store = client.app.state.platform.idempotency  # type: ignore[attr-defined]
    # The app's own purger (the same call, every few minutes) may take them first; either
    # way they are gone, so the count this call returns proves nothing and is not asserted.
    await store.purge_expired()
    left = await _owner_fetch(
        "SELECT key FROM platform.idempotency_keys WHERE key = ANY($1::text[])",
        [login_key, user_key],
    )
    assert left == []
