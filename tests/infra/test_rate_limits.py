"""Rate limits: failed logins per login and per IP, per-user budgets, headers, and one shared
budget across processes when Redis holds it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from limits.aio.storage import memory as memory_storage

from pantherahive.core.errors import RateLimited
from pantherahive.infra.ratelimit import RateLimits
from tests.conftest import PASSWORD, create_tenant, make_settings, running_app, unique
from tests.support.db import database_url, outbox
from tests.support.servers import redis_server


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(autouse=True)
def _one_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sliding window counter weighs the previous window's hits by how much of that
    window is left, so a test whose requests straddle a window boundary (a minute, five
    minutes) would find part of its budget back and see a 200 where a 429 is due. The
    in-memory storage's clock stands still during a test: every hit lands in one window.
    (The Redis test keeps the real clock: its keys expire in the server's time.)"""
    now = time.time()
    monkeypatch.setattr(memory_storage, "time", SimpleNamespace(time=lambda: now))


async def _fail_login(client: httpx.AsyncClient, slug: str, login: str) -> httpx.Response:
    return await client.post(
        "/v1/auth/login", json={"tenant": slug, "login": login, "password": "wrong-password"}
    )


async def test_failed_logins_for_one_login_are_throttled(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_login_failures="3/5 minutes")
    async with running_app(database_url(), settings) as client:
        tenant = await create_tenant(client)
        statuses = [(await _fail_login(client, tenant.slug, "admin")).status_code for _ in range(3)]
        assert statuses == [401, 401, 401]
        limited = await _fail_login(client, tenant.slug, "admin")
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.headers["ratelimit-limit"] == "3"
        assert limited.headers["ratelimit-remaining"] == "0"
        # even the right password is refused while the login is throttled
        right = await client.post(
            "/v1/auth/login", json={"tenant": tenant.slug, "login": "admin", "password": PASSWORD}
        )
        assert right.status_code == 429


async def test_failed_logins_from_one_ip_are_throttled_across_logins(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_login_failures="4/5 minutes")
    async with running_app(database_url(), settings) as client:
        tenant = await create_tenant(client)
        for i in range(4):
            assert (await _fail_login(client, tenant.slug, f"user{i}")).status_code == 401
        assert (await _fail_login(client, tenant.slug, "someone-new")).status_code == 429


async def test_per_user_budget_sends_headers_and_429(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_user="5/minute")
    async with running_app(database_url(), settings) as client:
        tenant = await create_tenant(client)
        answers = [await client.get("/v1/users/me", headers=tenant.admin.headers) for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        assert answers[0].headers["ratelimit-limit"] == "5"
        assert answers[0].headers["ratelimit-remaining"] == "4"
        assert int(answers[0].headers["ratelimit-reset"]) >= 0
        assert answers[-1].headers["retry-after"]


async def test_anonymous_budget_per_ip(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_anonymous="2/minute")
    async with running_app(database_url(), settings) as client:
        body = {"tenant": "none-such", "login": "x", "password": "y"}
        answers = [await client.post("/v1/auth/login", json=body) for _ in range(3)]
        assert [a.status_code for a in answers] == [401, 401, 429]


async def test_redis_budget_is_shared_between_app_instances(tmp_path: Path, redis_url: str) -> None:
    settings = make_settings(tmp_path, rate_limit_login_failures="2/5 minutes", redis_url=redis_url)
    login = unique("shared")
    async with running_app(database_url(), settings) as first:
        tenant = await create_tenant(first)
        for _ in range(2):
            assert (await _fail_login(first, tenant.slug, login)).status_code == 401
    async with running_app(database_url(), settings) as second:
        assert (await _fail_login(second, tenant.slug, login)).status_code == 429


async def test_error_responses_of_limited_routes_carry_the_headers(tmp_path: Path) -> None:
    """The limiter ran, so its headers go out with whatever answer follows, errors too."""
    settings = make_settings(
        tmp_path, rate_limit_user="50/minute", rate_limit_anonymous="40/minute"
    )
    async with running_app(database_url(), settings) as client:
        tenant = await create_tenant(client)
        headers = tenant.admin.headers
        answers = {
            "404": await client.get(f"/v1/users/{uuid.uuid4()}", headers=headers),
            "422 query": await client.get("/v1/users", headers=headers, params={"limit": 0}),
            "422 body": await client.post("/v1/users", headers=headers, json={"username": 1}),
            "409": await client.post(
                "/v1/users",
                headers=headers,
                json={"username": "admin", "password": PASSWORD, "role": "MEMBER"},
            ),
        }
        for name, answer in answers.items():
            assert answer.status_code == int(name[:3]), (name, answer.text)
            assert answer.headers["ratelimit-limit"] == "50", name
            assert int(answer.headers["ratelimit-remaining"]) < 50, name
            assert int(answer.headers["ratelimit-reset"]) >= 0, name
        wrong = await _fail_login(client, tenant.slug, "admin")
        assert wrong.status_code == 401
        assert wrong.headers["ratelimit-limit"] == "40"
        assert int(wrong.headers["ratelimit-remaining"]) < 40
        assert "ratelimit-reset" in wrong.headers
        # one set of headers, not the route's beside the error's
        assert wrong.headers.get_list("ratelimit-limit") == ["40"]


async def test_parallel_wrong_logins_cannot_outrun_the_limit(tmp_path: Path) -> None:
    """Thirty guesses at once against a budget of five: at most five reach the password."""
    settings = make_settings(tmp_path, rate_limit_login_failures="5/5 minutes")
    async with running_app(database_url(), settings) as client:
        tenant = await create_tenant(client)
        answers = await asyncio.gather(
            *(_fail_login(client, tenant.slug, "admin") for _ in range(30))
        )
        statuses = [a.status_code for a in answers]
        assert set(statuses) <= {401, 429}
        assert statuses.count(401) <= 5
        assert statuses.count(429) >= 25
        # every attempt leaves its auth.login_failed: guessed, or throttled before guessing
        reasons = [e["data"]["reason"] for e in await outbox(client, tenant.id)
                   if e["type"] == "auth.login_failed"]
        assert reasons.count("bad_credentials") == statuses.count(401)
        assert reasons.count("throttled") == statuses.count(429)


def _from(client: httpx.AsyncClient, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=client.app, client=(ip, 40000))  # type: ignore[attr-defined]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_a_good_login_forgives_that_login_but_not_the_ip(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_login_failures="3/5 minutes")
    async with running_app(database_url(), settings) as client:
        tenant = await create_tenant(client)
        right = {"tenant": tenant.slug, "login": "admin", "password": PASSWORD}
        async with _from(client, "10.0.0.1") as first, _from(client, "10.0.0.2") as second:
            # 10.0.0.1: two wrong guesses at admin, then admin's right password
            assert (await _fail_login(first, tenant.slug, "admin")).status_code == 401
            assert (await _fail_login(first, tenant.slug, "admin")).status_code == 401
            assert (await first.post("/v1/auth/login", json=right)).status_code == 200
            # the IP got back only the good attempt's unit: one more guess, then 429
            assert (await _fail_login(first, tenant.slug, "someone")).status_code == 401
            assert (await _fail_login(first, tenant.slug, "someone-else")).status_code == 429
            # admin's own budget was reset by the right password: three fresh guesses
            statuses = [
                (await _fail_login(second, tenant.slug, "admin")).status_code for _ in range(4)
            ]
            assert statuses == [401, 401, 401, 429]


async def _change_password(
    client: httpx.AsyncClient, token: str, current: str, new: str = "brand-new-pass-2"
) -> httpx.Response:
    return await client.post(
        "/v1/users/me/password",
        headers={"Authorization": f"Bearer {token}"},
        json={"currentPassword": current, "newPassword": new},
    )


async def test_wrong_current_passwords_are_throttled_per_user(tmp_path: Path) -> None:
    """A stolen access token must not become an unlimited password oracle."""
    settings = make_settings(tmp_path, rate_limit_login_failures="3/5 minutes")
    async with running_app(database_url(), settings) as client:
        tenant = await create_tenant(client)
        token = tenant.admin.token
        statuses = [(await _change_password(client, token, "not-it")).status_code for _ in range(4)]
        assert statuses == [422, 422, 422, 429]
        # the right current password waits too: guessing it is what the limit bounds
        right = await _change_password(client, token, PASSWORD)
        assert right.status_code == 429
        assert int(right.headers["retry-after"]) >= 1
        assert right.json()["type"].endswith("/rate-limited")
        reasons = [e["data"]["reason"] for e in await outbox(client, tenant.id)
                   if e["type"] == "auth.password_change_failed"]
        assert reasons == ["bad_credentials"] * 3 + ["throttled"] * 2
        # it is this user's budget, not the tenant's or the login's
        other = await client.post(
            "/v1/auth/login", json={"tenant": tenant.slug, "login": "admin", "password": PASSWORD}
        )
        assert other.status_code == 200


async def test_the_right_current_password_resets_the_count(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_login_failures="3/5 minutes")
    async with running_app(database_url(), settings) as client:
        tenant = await create_tenant(client)
        token = tenant.admin.token
        for _ in range(2):
            assert (await _change_password(client, token, "not-it")).status_code == 422
        assert (await _change_password(client, token, PASSWORD)).status_code == 204
        login = await client.post(
            "/v1/auth/login",
            json={"tenant": tenant.slug, "login": "admin", "password": "brand-new-pass-2"},
        )
        assert login.status_code == 200
        fresh = login.json()["accessToken"]
        statuses = [(await _change_password(client, fresh, "not-it")).status_code for _ in range(4)]
        assert statuses == [422, 422, 422, 429]


@pytest.mark.parametrize("storage", ["memory", "redis"])
async def test_consume_refund_and_clear_on_both_storages(
    storage: str, request: pytest.FixtureRequest
) -> None:
    redis = request.getfixturevalue("redis_url") if storage == "redis" else None
    limits = RateLimits(redis_url=redis)
    item = limits.parse("2/5 minutes")
    key = ("unit", unique("k"))
    await limits.consume(item, *key)
    await limits.consume(item, *key)
    with pytest.raises(RateLimited):
        await limits.consume(item, *key)
    await limits.refund(item, *key)
    await limits.consume(item, *key)  # the refunded unit
    with pytest.raises(RateLimited):
        await limits.consume(item, *key)
    await limits.clear(item, *key)
    await limits.consume(item, *key)
    await limits.consume(item, *key)
