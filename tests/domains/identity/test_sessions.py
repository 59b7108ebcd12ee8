"""Login sessions: listed with their device, ended one by one, all others, or all of a user
by an ADMIN — and an ended session's access token stops working at once."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from pantherahive.core.clock import frozen
from pantherahive.core.errors import Unauthenticated
from pantherahive.infra.security.signing_keys import KeyRing
from pantherahive.infra.security.tokens import AccessTokens
from pantherahive.settings import Settings
from tests.conftest import PASSWORD, Actor, TenantHandle, add_user

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _login(
    client: httpx.AsyncClient, tenant: TenantHandle, actor: Actor, agent: str = "pytest"
) -> dict[str, Any]:
    answer = await client.post(
        "/v1/auth/login",
        json={"tenant": tenant.slug, "login": actor.username, "password": PASSWORD},
        headers={"User-Agent": agent},
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def _sessions(client: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    answer = await client.get("/v1/users/me/sessions", headers=_auth(token))
    assert answer.status_code == 200, answer.text
    assert answer.json()["nextCursor"] is None
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def _me(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get("/v1/users/me", headers=_auth(token))).status_code


async def _refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post("/v1/auth/refresh", json={"refreshToken": refresh_token})


async def test_sessions_are_listed_with_their_device_and_the_current_one(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    phone = await _login(client, tenant, user, PHONE)
    mine = await _sessions(client, user.token)
    assert len(mine) == 2
    assert [item["current"] for item in mine] == [True, False]
    assert mine[1]["userAgent"] == PHONE
    assert mine[1]["ip"] == "127.0.0.1"
    assert set(mine[0]) == {"id", "userAgent", "ip", "createdAt", "lastUsedAt", "current"}
    from_phone = await _sessions(client, phone["accessToken"])
    assert [item["current"] for item in from_phone] == [False, True]
    paged = await client.get("/v1/users/me/sessions?limit=1", headers=user.headers)
    assert [item["id"] for item in paged.json()["items"]] == [mine[0]["id"]]
    assert paged.json()["nextCursor"] is not None


async def test_a_refresh_continues_the_session_and_moves_last_used(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    [before] = await _sessions(client, user.token)
    later = datetime.now(UTC) + timedelta(minutes=10)
    with frozen(lambda: later):
        rotated = await _refresh(client, user.refresh_token)
    assert rotated.status_code == 200
    [after] = await _sessions(client, rotated.json()["accessToken"])
    assert after["id"] == before["id"]
    assert after["current"] is True
    assert after["createdAt"] == before["createdAt"]
    assert datetime.fromisoformat(after["lastUsedAt"]) > datetime.fromisoformat(
        before["lastUsedAt"]
    )


async def test_ending_one_session_stops_its_tokens_at_once(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    phone = await _login(client, tenant, user, PHONE)
    phone_id = next(s["id"] for s in await _sessions(client, user.token) if not s["current"])
    ended = await client.delete(f"/v1/users/me/sessions/{phone_id}", headers=user.headers)
    assert ended.status_code == 204
    assert await _me(client, phone["accessToken"]) == 401
    assert (await _refresh(client, phone["refreshToken"])).status_code == 401
    assert await _me(client, user.token) == 200
    assert [s["current"] for s in await _sessions(client, user.token)] == [True]
    again = await client.delete(f"/v1/users/me/sessions/{phone_id}", headers=user.headers)
    assert again.status_code == 404


async def test_ending_all_other_sessions_keeps_this_one(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    others = [await _login(client, tenant, user, f"device-{n}") for n in range(2)]
    ended = await client.delete("/v1/users/me/sessions?others=true", headers=user.headers)
    assert ended.status_code == 204
    for other in others:
        assert await _me(client, other["accessToken"]) == 401
        assert (await _refresh(client, other["refreshToken"])).status_code == 401
    assert await _me(client, user.token) == 200
    assert (await _refresh(client, user.refresh_token)).status_code == 200


async def test_ending_every_session_ends_this_one_too(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    other = await _login(client, tenant, user)
    ended = await client.delete("/v1/users/me/sessions", headers=user.headers)
    assert ended.status_code == 204
    assert await _me(client, user.token) == 401
    assert await _me(client, other["accessToken"]) == 401


async def test_an_admin_ends_every_session_of_a_user(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    other = await _login(client, tenant, user)
    refused = await client.delete(
        f"/v1/users/{user.id}/sessions", headers=tenant.users["MANAGER"].headers
    )
    assert refused.status_code == 403
    assert await _me(client, user.token) == 200
    ended = await client.delete(f"/v1/users/{user.id}/sessions", headers=tenant.admin.headers)
    assert ended.status_code == 204
    for token in (user.token, other["accessToken"]):
        assert await _me(client, token) == 401
    assert (await _refresh(client, user.refresh_token)).status_code == 401
    assert (await _login(client, tenant, user))["accessToken"]


async def test_another_tenants_user_or_session_is_404(
    client: httpx.AsyncClient, tenant: TenantHandle, tenant_factory: Any
) -> None:
    stranger_tenant = await tenant_factory()
    stranger = await add_user(client, stranger_tenant, "MEMBER")
    [theirs] = await _sessions(client, stranger.token)
    foreign_user = await client.delete(
        f"/v1/users/{stranger.id}/sessions", headers=tenant.admin.headers
    )
    assert foreign_user.status_code == 404
    foreign_session = await client.delete(
        f"/v1/users/me/sessions/{theirs['id']}", headers=tenant.admin.headers
    )
    assert foreign_session.status_code == 404
    # and a colleague's session is not the caller's either
    colleague = tenant.users["MEMBER"]
    [colleagues] = await _sessions(client, colleague.token)
    not_mine = await client.delete(
        f"/v1/users/me/sessions/{colleagues['id']}", headers=tenant.admin.headers
    )
    assert not_mine.status_code == 404
    assert await _me(client, stranger.token) == 200
    assert await _me(client, colleague.token) == 200
    unknown = await client.delete(
        f"/v1/users/me/sessions/{uuid.uuid4()}", headers=tenant.admin.headers
    )
    assert unknown.status_code == 404


async def test_logout_ends_the_sessions_access_tokens_too(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    out = await client.post("/v1/auth/logout", json={"refreshToken": user.refresh_token})
    assert out.status_code == 204
    assert await _me(client, user.token) == 401


async def test_a_password_change_ends_the_other_sessions_only(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    other = await _login(client, tenant, user)
    changed = await client.post(
        "/v1/users/me/password", headers=user.headers,
        json={"currentPassword": PASSWORD, "newPassword": "brand-new-pass-2"},
    )
    assert changed.status_code == 204
    assert await _me(client, user.token) == 200
    assert await _me(client, other["accessToken"]) == 401
    assert (await _refresh(client, other["refreshToken"])).status_code == 401
    assert (await _refresh(client, user.refresh_token)).status_code == 200


async def test_an_access_token_without_a_live_session_is_401(
    client: httpx.AsyncClient, tenant: TenantHandle, settings: Settings
) -> None:
    settings_secret = settings.resolved_jwt_secret()
    member = tenant.users["MEMBER"]
    now = int(time.time())
    claims = {
        "iss": "pantherahive", "aud": "pantherahive-api", "sub": member.id, "tid": tenant.id,
        "ver": 0, "iat": now, "exp": now + 600,
    }
    without = jwt.encode(claims, settings_secret, algorithm="HS256")
    assert await _me(client, without) == 401
    made_up = jwt.encode({**claims, "sid": str(uuid.uuid4())}, settings_secret, algorithm="HS256")
    assert await _me(client, made_up) == 401


async def test_session_routes_need_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/users/me/sessions")).status_code == 401
    assert (await client.delete("/v1/users/me/sessions")).status_code == 401
    assert (await client.delete(f"/v1/users/me/sessions/{uuid.uuid4()}")).status_code == 401
    assert (await client.delete(f"/v1/users/{uuid.uuid4()}/sessions")).status_code == 401


def test_access_tokens_carry_their_session(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "keys")
    ring.add(activate=True)
    issuer = AccessTokens(ring, issuer="iss", audience="aud", ttl_seconds=60)
    session_id = uuid.uuid4()
    token = issuer.issue(
        user_id=uuid.uuid4(), tenant_id=uuid.uuid4(), token_version=0, session_id=session_id
    )
    assert issuer.verify(token).session_id == session_id
    bare = issuer.issue(user_id=uuid.uuid4(), tenant_id=uuid.uuid4(), token_version=0)
    assert issuer.verify(bare).session_id is None
    claims = jwt.decode(token, options={"verify_signature": False})
    kid, signer = ring.signer()
    garbled = jwt.encode({**claims, "sid": "not-a-uuid"}, signer, algorithm="EdDSA",
                         headers={"kid": kid})
    with pytest.raises(Unauthenticated):
        issuer.verify(garbled)
