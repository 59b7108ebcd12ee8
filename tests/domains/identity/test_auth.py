"""Every authentication failure mode, token rotation and revocation."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pantherahive.domains.identity.delivery import RecordingSender
from pantherahive.infra.security.signing_keys import key_ring
from pantherahive.settings import Settings
from tests.conftest import PASSWORD, Actor, TenantHandle, add_user
from tests.support.db import outbox_types


def _claims(actor: Actor, tenant: TenantHandle, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "pantherahive",
        "aud": "pantherahive-api",
        "sub": actor.id,
        "tid": tenant.id,
        "ver": 0,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return claims


async def _me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})


async def _login(client: httpx.AsyncClient, slug: str, login: str, password: str) -> httpx.Response:
    return await client.post(
        "/v1/auth/login", json={"tenant": slug, "login": login, "password": password}
    )


async def test_login_by_username_or_email_case_insensitively(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    member = tenant.users["MEMBER"]
    for login in (member.username, member.username.upper(), (member.email or "").upper()):
        response = await _login(client, tenant.slug, login, PASSWORD)
        assert response.status_code == 200, login
        body = response.json()
        assert body["tokenType"] == "Bearer"
        assert 0 < body["expiresIn"] <= 900
        assert (await _me(client, body["accessToken"])).json()["id"] == member.id


async def test_wrong_password_unknown_user_and_unknown_tenant_look_the_same(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    answers = [
        await _login(client, tenant.slug, tenant.users["MEMBER"].username, "wrong-password"),
        await _login(client, tenant.slug, "nobody-here", PASSWORD),
        await _login(client, "no-such-tenant-x", "admin", PASSWORD),
    ]
    assert {a.status_code for a in answers} == {401}
    bodies = [{k: v for k, v in a.json().items() if k != "instance"} for a in answers]
    assert bodies[0] == bodies[1] == bodies[2]
    assert "auth.login_failed" in await outbox_types(tenant.id)


@pytest.mark.parametrize(
    "mutation",
    [
        "expired",
        "tampered",
        "alg_none",
        "wrong_audience",
        "wrong_issuer",
        "other_key",
        "garbage",
        "missing_exp",
        "other_tenant_claim",
    ],
)
async def test_bad_access_tokens_are_401(
    client: httpx.AsyncClient, tenant: TenantHandle, settings: Settings, mutation: str
) -> None:
    member = tenant.users["MEMBER"]
    kid, key = key_ring(settings).signer()

    def sign(claims: dict[str, object], signer: Ed25519PrivateKey = key) -> str:
        return jwt.encode(claims, signer, algorithm="EdDSA", headers={"kid": kid})

    if mutation == "expired":
        token = sign(
            _claims(member, tenant, exp=int(time.time()) - 60, iat=int(time.time()) - 1000)
        )
    elif mutation == "tampered":
        head, payload, signature = member.token.split(".")
        flipped = "A" if signature[5] != "A" else "B"
        token = f"{head}.{payload}.{signature[:5]}{flipped}{signature[6:]}"
    elif mutation == "alg_none":
        token = jwt.encode(_claims(member, tenant), key=None, algorithm="none")  # type: ignore[arg-type]
    elif mutation == "wrong_audience":
        token = sign(_claims(member, tenant, aud="someone-else"))
    elif mutation == "wrong_issuer":
        token = sign(_claims(member, tenant, iss="evil"))
    elif mutation == "other_key":
        token = sign(_claims(member, tenant), Ed25519PrivateKey.generate())
    elif mutation == "missing_exp":
        claims = _claims(member, tenant)
        del claims["exp"]
        token = sign(claims)
    elif mutation == "other_tenant_claim":
        token = sign(_claims(member, tenant, tid=str(uuid.uuid4())))
    else:
        token = "not.a.jwt"
    response = await _me(client, token)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"


async def test_missing_or_non_bearer_authorization_is_401(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/users/me")).status_code == 401
    basic = await client.get("/v1/users/me", headers={"Authorization": "Basic YTpi"})
    assert basic.status_code == 401


async def test_refresh_rotates_and_reuse_revokes_the_family(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    member = tenant.users["MEMBER"]
    first = await client.post("/v1/auth/refresh", json={"refreshToken": member.refresh_token})
    assert first.status_code == 200
    rotated = first.json()["refreshToken"]
    assert rotated != member.refresh_token
    assert (await _me(client, first.json()["accessToken"])).status_code == 200

    reuse = await client.post("/v1/auth/refresh", json={"refreshToken": member.refresh_token})
    assert reuse.status_code == 401
    # the descendant of the replayed token is dead too: the whole family is revoked
    after = await client.post("/v1/auth/refresh", json={"refreshToken": rotated})
    assert after.status_code == 401
    assert "auth.refresh_reused" in await outbox_types(tenant.id)


@pytest.mark.parametrize(
    "token", ["", "phr_zz_abc", "phr_" + uuid.uuid4().hex + "_forged", "x" * 300]
)
async def test_dead_or_foreign_refresh_tokens_are_rejected(
    client: httpx.AsyncClient, token: str
) -> None:
    response = await client.post("/v1/auth/refresh", json={"refreshToken": token})
    assert response.status_code in (401, 422)


async def test_logout_revokes_the_family(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    member = tenant.users["MEMBER"]
    out = await client.post("/v1/auth/logout", json={"refreshToken": member.refresh_token})
    assert out.status_code == 204
    again = await client.post("/v1/auth/refresh", json={"refreshToken": member.refresh_token})
    assert again.status_code == 401


async def test_deactivation_revokes_access_and_refresh_at_once(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    victim = await add_user(client, tenant, "MEMBER")
    assert (await _me(client, victim.token)).status_code == 200
    gone = await client.delete(f"/v1/users/{victim.id}", headers=tenant.admin.headers)
    assert gone.status_code == 204
    assert (await _me(client, victim.token)).status_code == 401
    refresh = await client.post("/v1/auth/refresh", json={"refreshToken": victim.refresh_token})
    assert refresh.status_code == 401
    login = await _login(client, tenant.slug, victim.username, PASSWORD)
    wrong = await _login(client, tenant.slug, victim.username, "wrong-password")
    assert login.status_code == wrong.status_code == 401
    assert login.json()["detail"] == wrong.json()["detail"]
    still = await client.get(f"/v1/users/{victim.id}", headers=tenant.admin.headers)
    assert still.json()["status"] == "INACTIVE"
    assert "user.deactivated" in await outbox_types(tenant.id)


async def test_role_change_takes_effect_on_the_old_token_immediately(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    promoted = await add_user(client, tenant, "MEMBER")
    change = await client.patch(
        f"/v1/users/{promoted.id}", headers=tenant.admin.headers, json={"role": "ADMIN"}
    )
    assert change.status_code == 200
    assert (await _me(client, promoted.token)).status_code == 401
    fresh = (await _login(client, tenant.slug, promoted.username, PASSWORD)).json()["accessToken"]
    create = await client.post(
        "/v1/users",
        headers={"Authorization": f"Bearer {fresh}"},
        json={"username": f"by-{promoted.username}", "password": PASSWORD, "role": "MEMBER"},
    )
    assert create.status_code == 201


async def test_password_change_revokes_sessions(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    wrong = await client.post(
        "/v1/users/me/password",
        headers=user.headers,
        json={"currentPassword": "not-it-at-all", "newPassword": "brand-new-pass-2"},
    )
    # the session is fine, the field is wrong: not a 401 that reads as "log in again"
    assert wrong.status_code == 422
    assert "www-authenticate" not in wrong.headers
    assert wrong.json()["errors"] == [
        {"field": "currentPassword", "message": "is not your current password"}
    ]
    assert (await _me(client, user.token)).status_code == 200
    ok = await client.post(
        "/v1/users/me/password",
        headers=user.headers,
        json={"currentPassword": PASSWORD, "newPassword": "brand-new-pass-2"},
    )
    assert ok.status_code == 204
    # the session that changed it goes on; every other one ends (tests/…/test_sessions.py)
    assert (await _me(client, user.token)).status_code == 200
    assert (await _login(client, tenant.slug, user.username, PASSWORD)).status_code == 401
    assert (await _login(client, tenant.slug, user.username, "brand-new-pass-2")).status_code == 200


async def test_password_reset_flow_is_single_use_and_revokes_sessions(
    client: httpx.AsyncClient, tenant: TenantHandle, sender: RecordingSender
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    before = len(sender.sent)
    unknown = await client.post(
        "/v1/auth/password-reset", json={"tenant": tenant.slug, "email": "ghost@nowhere.example"}
    )
    assert unknown.status_code == 202
    assert len(sender.sent) == before
    asked = await client.post(
        "/v1/auth/password-reset", json={"tenant": tenant.slug, "email": user.email}
    )
    assert asked.status_code == 202
    kind, user_id, token = sender.sent[-1]
    assert (kind, str(user_id)) == ("password_reset", user.id)
    confirm = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "newPassword": "reset-pass-33"}
    )
    assert confirm.status_code == 204
    replay = await client.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "newPassword": "another-pass-4"}
    )
    assert replay.status_code == 400
    assert (await _me(client, user.token)).status_code == 401
    refresh = await client.post("/v1/auth/refresh", json={"refreshToken": user.refresh_token})
    assert refresh.status_code == 401
    assert (await _login(client, tenant.slug, user.username, "reset-pass-33")).status_code == 200


async def _reuse_events(client: httpx.AsyncClient, tenant: TenantHandle) -> int:
    return (await outbox_types(tenant.id)).count("auth.refresh_reused")


@pytest.mark.parametrize("revocation", ["logout", "deactivation", "password_change"])
async def test_a_revoked_refresh_token_is_a_plain_401_not_a_reuse(
    client: httpx.AsyncClient, tenant: TenantHandle, revocation: str
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    if revocation == "logout":
        out = await client.post("/v1/auth/logout", json={"refreshToken": user.refresh_token})
        assert out.status_code == 204
    elif revocation == "deactivation":
        gone = await client.delete(f"/v1/users/{user.id}", headers=tenant.admin.headers)
        assert gone.status_code == 204
    else:
        # from another session: the changing session's own refresh token lives on
        other = (await _login(client, tenant.slug, user.username, PASSWORD)).json()
        changed = await client.post(
            "/v1/users/me/password",
            headers={"Authorization": f"Bearer {other['accessToken']}"},
            json={"currentPassword": PASSWORD, "newPassword": "brand-new-pass-2"},
        )
        assert changed.status_code == 204
    before = await _reuse_events(client, tenant)
    for _ in range(2):
        refused = await client.post("/v1/auth/refresh", json={"refreshToken": user.refresh_token})
        assert refused.status_code == 401
        assert refused.json()["type"].endswith("/unauthenticated")
    assert await _reuse_events(client, tenant) == before


async def test_a_rotated_token_coming_back_is_reuse_once_per_attempt(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    rotated = await client.post("/v1/auth/refresh", json={"refreshToken": user.refresh_token})
    assert rotated.status_code == 200
    before = await _reuse_events(client, tenant)
    replayed = await client.post("/v1/auth/refresh", json={"refreshToken": user.refresh_token})
    assert replayed.status_code == 401
    assert replayed.json()["type"].endswith("/invalid-refresh-token")
    assert await _reuse_events(client, tenant) == before + 1
    successor = rotated.json()["refreshToken"]
    dead = await client.post("/v1/auth/refresh", json={"refreshToken": successor})
    assert dead.status_code == 401  # the family went with it


async def test_answers_with_tokens_are_never_cached(client: httpx.AsyncClient) -> None:
    """RFC 6749 §5.1: Cache-Control: no-store on every response that carries a token."""
    slug = f"nostore-{uuid.uuid4().hex[:8]}"
    signup = await client.post(
        "/v1/tenants",
        json={"name": slug, "slug": slug, "admin": {"username": "root", "password": PASSWORD}},
    )
    login = await _login(client, slug, "root", PASSWORD)
    refresh = await client.post(
        "/v1/auth/refresh", json={"refreshToken": login.json()["refreshToken"]}
    )
    for answer in (signup, login, refresh):
        assert answer.status_code in (200, 201), answer.text
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["pragma"] == "no-cache"
