"""With require_email_verification on, new users wait for their email to be confirmed."""

from __future__ import annotations

from pathlib import Path

from pantherahive.domains.identity.delivery import RecordingSender
from tests.conftest import PASSWORD, make_settings, running_app, unique
from tests.support.db import database_url


async def test_pending_user_cannot_log_in_until_verified(tmp_path: Path) -> None:
    sender = RecordingSender()
    settings = make_settings(tmp_path, require_email_verification=True)
    async with running_app(database_url(), settings, sender) as client:
        slug = unique("verify")
        created = await client.post(
            "/v1/tenants",
            json={
                "name": slug,
                "slug": slug,
                "admin": {
                    "username": "root",
                    "password": PASSWORD,
                    "email": f"root@{slug}.example",
                },
            },
        )
        assert created.status_code == 201
        assert created.json()["user"]["status"] == "PENDING_VERIFICATION"
        # no tokens that could not be used anyway
        assert created.json()["accessToken"] is None
        assert created.json()["refreshToken"] is None
        assert created.json()["expiresIn"] is None
        login = {"tenant": slug, "login": "root", "password": PASSWORD}
        refused = await client.post("/v1/auth/login", json=login)
        assert refused.status_code == 403
        assert refused.json()["type"].endswith("/email-not-verified")
        wrong = await client.post("/v1/auth/login", json={**login, "password": "bad-password"})
        assert wrong.status_code == 401

        kind, _user_id, token = sender.sent[-1]
        assert kind == "verify_email"
        bogus = await client.post("/v1/auth/verify-email", json={"token": token + "x"})
        assert bogus.status_code == 400
        assert (
            await client.post("/v1/auth/verify-email", json={"token": token})
        ).status_code == 204
        again = await client.post("/v1/auth/verify-email", json={"token": token})
        assert again.status_code == 400
        accepted = await client.post("/v1/auth/login", json=login)
        assert accepted.status_code == 200
        me = await client.get(
            "/v1/users/me", headers={"Authorization": f"Bearer {accepted.json()['accessToken']}"}
        )
        assert me.json()["status"] == "ACTIVE"


async def test_users_without_an_email_are_refused_while_verification_is_required(
    tmp_path: Path,
) -> None:
    sender = RecordingSender()
    settings = make_settings(tmp_path, require_email_verification=True)
    async with running_app(database_url(), settings, sender) as client:
        slug = unique("no-mail")
        admin = {"username": "root", "password": PASSWORD}
        refused = await client.post(
            "/v1/tenants", json={"name": slug, "slug": slug, "admin": admin}
        )
        assert refused.status_code == 422
        assert [e["field"] for e in refused.json()["errors"]] == ["admin.email"]

        email = f"root@{slug}.example"
        created = await client.post(
            "/v1/tenants", json={"name": slug, "slug": slug, "admin": {**admin, "email": email}}
        )
        assert created.status_code == 201
        _kind, _user_id, token = sender.sent[-1]
        assert (
            await client.post("/v1/auth/verify-email", json={"token": token})
        ).status_code == 204
        login = await client.post(
            "/v1/auth/login", json={"tenant": slug, "login": "root", "password": PASSWORD}
        )
        headers = {"Authorization": f"Bearer {login.json()['accessToken']}"}
        no_email = await client.post(
            "/v1/users",
            headers=headers,
            json={"username": "mailless", "password": PASSWORD, "role": "MEMBER"},
        )
        assert no_email.status_code == 422
        assert [e["field"] for e in no_email.json()["errors"]] == ["email"]
