"""TOTP two-factor authentication: enrollment, the login's second step, recovery codes,
replay and throttling, removal, and the tenant that requires 2FA. Time is the platform's
controlled clock: every code is computed for the moment the server sees."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from pantherahive.core.clock import frozen
from pantherahive.domains.identity.mfa import requires_2fa, set_require_2fa
from pantherahive.infra.db.engine import set_tenant
from tests.conftest import (
    PASSWORD,
    Actor,
    TenantHandle,
    add_user,
    create_tenant,
    make_settings,
    running_app,
)
from tests.support.db import database_url, outbox_types
from tests.support.servers import owner_connection


class Clock:
    """The platform's clock, moved by the test (``core.clock.frozen``)."""

    def __init__(self) -> None:
        self.moment = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, seconds: float = 30) -> None:
        self.moment += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Iterator[Clock]:
    source = Clock()
    with frozen(source):
        yield source


async def _login(client: httpx.AsyncClient, tenant: TenantHandle, actor: Actor) -> httpx.Response:
    return await client.post(
        "/v1/auth/login",
        json={"tenant": tenant.slug, "login": actor.username, "password": PASSWORD},
    )


async def _challenge(client: httpx.AsyncClient, tenant: TenantHandle, actor: Actor) -> str:
    answer = await _login(client, tenant, actor)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["mfaRequired"] is True
    assert body["enrollmentRequired"] is False
    assert "accessToken" not in body
    return str(body["challenge"])


async def _second_step(client: httpx.AsyncClient, **body: str) -> httpx.Response:
    return await client.post("/v1/auth/login/2fa", json=body)


async def _enroll(
    client: httpx.AsyncClient, actor: Actor, clock: Clock
) -> tuple[pyotp.TOTP, list[str]]:
    started = await client.post("/v1/users/me/2fa/totp", headers=actor.headers)
    assert started.status_code == 201, started.text
    totp = pyotp.TOTP(started.json()["secret"])
    confirmed = await client.post(
        "/v1/users/me/2fa/totp/confirm", headers=actor.headers,
        json={"code": totp.at(clock.moment)},
    )
    assert confirmed.status_code == 200, confirmed.text
    return totp, confirmed.json()["recoveryCodes"]


def _other_than(code: str) -> str:
    return "000000" if code != "000000" else "111111"


async def _me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})


async def _db_rows(sql: str, *args: Any) -> list[Any]:
    conn = await owner_connection(database_url())
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def test_enroll_confirm_and_log_in_with_a_code(
    client: httpx.AsyncClient, tenant: TenantHandle, clock: Clock
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    started = await client.post("/v1/users/me/2fa/totp", headers=user.headers)
    assert started.status_code == 201
    assert started.headers["cache-control"] == "no-store"
    enrollment = started.json()
    assert enrollment["otpauthUri"].startswith("otpauth://totp/PantheraHive:")
    assert f"{user.username}%40{tenant.slug}" in enrollment["otpauthUri"]
    totp = pyotp.TOTP(enrollment["secret"])

    # pending: a login still gets tokens
    assert "accessToken" in (await _login(client, tenant, user)).json()
    wrong = await client.post(
        "/v1/users/me/2fa/totp/confirm", headers=user.headers,
        json={"code": _other_than(totp.at(clock.moment))},
    )
    assert wrong.status_code == 422
    assert wrong.json()["errors"] == [{"field": "code", "message": "is not the current code"}]
    confirmed = await client.post(
        "/v1/users/me/2fa/totp/confirm", headers=user.headers,
        json={"code": totp.at(clock.moment)},
    )
    assert confirmed.status_code == 200
    codes = confirmed.json()["recoveryCodes"]
    assert len(codes) == len(set(codes)) == 10

    clock.advance()
    challenge = await _challenge(client, tenant, user)
    done = await _second_step(client, challenge=challenge, code=totp.at(clock.moment))
    assert done.status_code == 200, done.text
    assert done.headers["cache-control"] == "no-store"
    assert (await _me(client, done.json()["accessToken"])).status_code == 200
    # the challenge was single-use
    clock.advance()
    again = await _second_step(client, challenge=challenge, code=totp.at(clock.moment))
    assert again.status_code == 401
    assert again.json()["type"].endswith("/invalid-mfa")
    types = await outbox_types(tenant.id)
    for expected in ("user.mfa_enrollment_started", "user.mfa_enrolled", "auth.mfa_challenged",
                     "auth.mfa_succeeded", "auth.mfa_failed"):
        assert expected in types


async def test_a_code_is_never_accepted_twice(
    client: httpx.AsyncClient, tenant: TenantHandle, clock: Clock
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    totp, _codes = await _enroll(client, user, clock)
    # the confirming code itself cannot log in
    replayed = await _second_step(
        client, challenge=await _challenge(client, tenant, user), code=totp.at(clock.moment)
    )
    assert replayed.status_code == 401
    clock.advance()
    code = totp.at(clock.moment)
    first = await _second_step(client, challenge=await _challenge(client, tenant, user), code=code)
    assert first.status_code == 200
    second = await _second_step(client, challenge=await _challenge(client, tenant, user), code=code)
    assert second.status_code == 401
    # nor is the previous step's code, still inside the drift window
    clock.advance()
    previous = totp.at(clock.moment - timedelta(seconds=30))
    stale = await _second_step(
        client, challenge=await _challenge(client, tenant, user), code=previous
    )
    assert stale.status_code == 401
    events = await _db_rows(
        "SELECT data->>'reason' AS reason FROM bus.outbox WHERE tenant_id = $1"
        " AND type = 'auth.mfa_failed' AND subject_id = $2", uuid.UUID(tenant.id), user.id,
    )
    assert [row["reason"] for row in events] == ["replayed_code"] * 3


async def test_a_recovery_code_logs_in_once(
    client: httpx.AsyncClient, tenant: TenantHandle, clock: Clock
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    _totp, codes = await _enroll(client, user, clock)
    typed = " " + codes[3].upper().replace("-", " ") + " "  # retyped from paper
    used = await _second_step(
        client, challenge=await _challenge(client, tenant, user), recoveryCode=typed
    )
    assert used.status_code == 200, used.text
    assert (await _me(client, used.json()["accessToken"])).status_code == 200
    again = await _second_step(
        client, challenge=await _challenge(client, tenant, user), recoveryCode=codes[3]
    )
    assert again.status_code == 401
    remaining = await _db_rows(
        "SELECT data->>'remaining' AS remaining FROM bus.outbox WHERE tenant_id = $1"
        " AND type = 'auth.recovery_code_used'", uuid.UUID(tenant.id),
    )
    assert [row["remaining"] for row in remaining] == ["9"]


async def test_a_code_and_a_recovery_code_together_or_neither_are_422(
    client: httpx.AsyncClient,
) -> None:
    both = await _second_step(client, challenge="phm_x_y", code="123456", recoveryCode="abcd")
    neither = await _second_step(client, challenge="phm_x_y")
    assert both.status_code == neither.status_code == 422


@pytest.mark.parametrize("challenge", ["x", "phm_zz_abc", "phm_" + uuid.uuid4().hex + "_forged"])
async def test_unknown_challenges_are_401(client: httpx.AsyncClient, challenge: str) -> None:
    answer = await _second_step(client, challenge=challenge, code="123456")
    assert answer.status_code == 401


async def test_an_expired_challenge_is_401(
    client: httpx.AsyncClient, tenant: TenantHandle, clock: Clock
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    totp, _codes = await _enroll(client, user, clock)
    challenge = await _challenge(client, tenant, user)
    clock.advance(301)
    late = await _second_step(client, challenge=challenge, code=totp.at(clock.moment))
    assert late.status_code == 401


async def test_wrong_codes_are_throttled_per_user(tmp_path: Path, clock: Clock) -> None:
    settings = make_settings(tmp_path, rate_limit_login_failures="3/5 minutes")
    async with running_app(database_url(), settings) as own:
        tenant = await create_tenant(own)
        user = await add_user(own, tenant, "MEMBER")
        totp, _codes = await _enroll(own, user, clock)
        clock.advance()
        right = totp.at(clock.moment)
        wrong = _other_than(right)
        challenge = await _challenge(own, tenant, user)
        statuses = [
            (await _second_step(own, challenge=challenge, code=wrong)).status_code
            for _ in range(3)
        ]
        assert statuses == [401, 401, 401]
        limited = await _second_step(own, challenge=challenge, code=right)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        reasons = await _db_rows(
            "SELECT data->>'reason' AS reason FROM bus.outbox WHERE tenant_id = $1"
            " AND type = 'auth.mfa_failed' ORDER BY position", uuid.UUID(tenant.id),
        )
        assert [row["reason"] for row in reasons] == ["bad_code"] * 3 + ["throttled"]


async def test_disabling_needs_the_password_and_a_code(
    client: httpx.AsyncClient, tenant: TenantHandle, clock: Clock
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    totp, codes = await _enroll(client, user, clock)
    clock.advance()
    bad_password = await client.request(
        "DELETE", "/v1/users/me/2fa/totp", headers=user.headers,
        json={"password": "not-my-password", "code": totp.at(clock.moment)},
    )
    assert bad_password.status_code == 422
    assert bad_password.json()["errors"][0]["field"] == "password"
    bad_recovery = await client.request(
        "DELETE", "/v1/users/me/2fa/totp", headers=user.headers,
        json={"password": PASSWORD, "recoveryCode": "aaaa-bbbb-cccc-dddd"},
    )
    assert bad_recovery.status_code == 422
    assert bad_recovery.json()["errors"][0]["field"] == "recoveryCode"
    off = await client.request(
        "DELETE", "/v1/users/me/2fa/totp", headers=user.headers,
        json={"password": PASSWORD, "code": totp.at(clock.moment)},
    )
    assert off.status_code == 204
    assert "accessToken" in (await _login(client, tenant, user)).json()
    gone = await client.request(
        "DELETE", "/v1/users/me/2fa/totp", headers=user.headers,
        json={"password": PASSWORD, "recoveryCode": codes[0]},
    )
    assert gone.status_code == 404
    assert "user.mfa_disabled" in await outbox_types(tenant.id)
    left = await _db_rows(
        "SELECT count(*) AS n FROM identity.recovery_codes WHERE user_id = $1",
        uuid.UUID(user.id),
    )
    assert left[0]["n"] == 0


async def test_enrolling_twice_or_confirming_nothing_is_409(
    client: httpx.AsyncClient, tenant: TenantHandle, clock: Clock
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    nothing = await client.post(
        "/v1/users/me/2fa/totp/confirm", headers=user.headers, json={"code": "123456"}
    )
    assert nothing.status_code == 409
    await _enroll(client, user, clock)
    again = await client.post("/v1/users/me/2fa/totp", headers=user.headers)
    assert again.status_code == 409


async def test_enrolling_and_disabling_end_the_other_sessions_only(
    client: httpx.AsyncClient, tenant: TenantHandle, clock: Clock
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    other = (await _login(client, tenant, user)).json()
    totp, _codes = await _enroll(client, user, clock)
    assert (await _me(client, user.token)).status_code == 200
    assert (await _me(client, other["accessToken"])).status_code == 401
    refresh = await client.post("/v1/auth/refresh", json={"refreshToken": other["refreshToken"]})
    assert refresh.status_code == 401

    clock.advance()
    second = await _second_step(
        client, challenge=await _challenge(client, tenant, user), code=totp.at(clock.moment)
    )
    clock.advance()
    off = await client.request(
        "DELETE", "/v1/users/me/2fa/totp", headers=user.headers,
        json={"password": PASSWORD, "code": totp.at(clock.moment)},
    )
    assert off.status_code == 204
    assert (await _me(client, user.token)).status_code == 200
    assert (await _me(client, second.json()["accessToken"])).status_code == 401


async def test_secrets_are_sealed_and_recovery_codes_hashed_at_rest(
    client: httpx.AsyncClient, tenant: TenantHandle, clock: Clock
) -> None:
    user = await add_user(client, tenant, "MEMBER")
    totp, codes = await _enroll(client, user, clock)
    [row] = await _db_rows(
        "SELECT secret FROM identity.totp_credentials WHERE user_id = $1", uuid.UUID(user.id)
    )
    assert totp.secret.encode() not in bytes(row["secret"])
    stored = await _db_rows(
        "SELECT code_hash FROM identity.recovery_codes WHERE user_id = $1", uuid.UUID(user.id)
    )
    assert len(stored) == 10
    assert all(len(bytes(r["code_hash"])) == 32 for r in stored)
    assert not any(code.encode() in bytes(r["code_hash"]) for r in stored for code in codes)


async def _set_required(client: httpx.AsyncClient, tenant: TenantHandle, required: bool) -> bool:
    db = client.app.state.platform.db  # type: ignore[attr-defined]
    async with db.sessions() as session, session.begin():
        await set_tenant(session, tenant.id)
        changed = await set_require_2fa(session, uuid.UUID(tenant.id), required=required)
        assert await requires_2fa(session, uuid.UUID(tenant.id)) is required
    return changed


async def test_a_tenant_requiring_2fa_sends_users_to_enroll(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    tenant = await create_tenant(client)
    user = await add_user(client, tenant, "MEMBER")
    assert await _set_required(client, tenant, True) is True
    assert await _set_required(client, tenant, True) is False  # no change

    answer = (await _login(client, tenant, user)).json()
    assert answer["mfaRequired"] is True
    assert answer["enrollmentRequired"] is True
    assert "accessToken" not in answer
    challenge = answer["challenge"]
    # an enrollment challenge does not pass for a second factor
    assert (await _second_step(client, challenge=challenge, code="123456")).status_code == 401

    started = await client.post("/v1/auth/login/2fa/enrollment", json={"challenge": challenge})
    assert started.status_code == 201, started.text
    totp = pyotp.TOTP(started.json()["secret"])
    done = await client.post(
        "/v1/auth/login/2fa/enrollment/confirm",
        json={"challenge": challenge, "code": totp.at(clock.moment)},
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert len(body["recoveryCodes"]) == 10
    assert (await _me(client, body["accessToken"])).status_code == 200
    # sessions from before the enrollment ended; the challenge is spent
    assert (await _me(client, user.token)).status_code == 401
    reused = await client.post("/v1/auth/login/2fa/enrollment", json={"challenge": challenge})
    assert reused.status_code == 401

    clock.advance()
    next_login = await _challenge(client, tenant, user)
    completed = await _second_step(client, challenge=next_login, code=totp.at(clock.moment))
    assert completed.status_code == 200
    assert await _set_required(client, tenant, False) is True


async def test_a_wrong_code_at_login_enrollment_is_401_and_leaves_tokens_alone(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    tenant = await create_tenant(client)
    user = await add_user(client, tenant, "MEMBER")
    await _set_required(client, tenant, True)
    challenge = (await _login(client, tenant, user)).json()["challenge"]
    started = await client.post("/v1/auth/login/2fa/enrollment", json={"challenge": challenge})
    right = pyotp.TOTP(started.json()["secret"]).at(clock.moment)
    wrong = await client.post(
        "/v1/auth/login/2fa/enrollment/confirm",
        json={"challenge": challenge, "code": _other_than(right)},
    )
    assert wrong.status_code == 401
    assert (await _me(client, user.token)).status_code == 200


async def test_2fa_routes_need_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/users/me/2fa/totp")).status_code == 401
    confirm = await client.post("/v1/users/me/2fa/totp/confirm", json={"code": "123456"})
    assert confirm.status_code == 401
    off = await client.request(
        "DELETE", "/v1/users/me/2fa/totp", json={"password": "x", "code": "123456"}
    )
    assert off.status_code == 401
