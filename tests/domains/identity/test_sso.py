"""OIDC single sign-on end to end, against a real OpenID Provider on a loopback port
(tests/support/oidc_provider.py): the browser's trip start → provider → callback, and every
way the provider's answer can be wrong."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from pantherahive.domains.identity.delivery import RecordingSender
from tests.conftest import Actor, TenantHandle, add_user, make_settings, running_app, unique
from tests.support.db import database_url
from tests.support.oidc_provider import OidcProvider, Person, new_key, running_provider
from tests.support.servers import free_port, owner_connection


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[OidcProvider]:
    async with running_provider() as running:
        yield running


@pytest.fixture(autouse=True)
def _honest_provider(provider: OidcProvider) -> None:
    provider.reset()


@pytest.fixture(scope="module")
async def sso(database_url: str, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[httpx.AsyncClient]:
    """The app with http issuers allowed (the test provider has no TLS)."""
    settings = make_settings(tmp_path_factory.mktemp("sso"), oidc_allow_http_issuers=True)
    async with running_app(database_url, settings, RecordingSender()) as app_client:
        yield app_client


def _person(email: str | None = None, **fields: Any) -> Person:
    return Person(sub=unique("sub"), email=email or f"{unique('p')}@idp.example", **fields)


async def _configure(client: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider,
                     **overrides: Any) -> httpx.Response:
    body = {
        "issuer": provider.issuer,
        "clientId": provider.client_id,
        "clientSecret": provider.client_secret,
        "enabled": True,
        "jitProvisioning": True,
        "require2fa": False,
        **overrides,
    }
    response = await client.put("/v1/tenant/sso", json=body, headers=tenant.admin.headers)
    assert response.status_code == 200, response.text
    return response


async def _to_callback(client: httpx.AsyncClient, slug: str) -> str:
    """Start at the app, go through the provider as a browser would: the callback URL the
    provider sends the browser to (path and query)."""
    start = await client.get(f"/v1/auth/oidc/{slug}/start")
    assert start.status_code == 302, start.text
    async with httpx.AsyncClient() as browser:
        at_provider = await browser.get(start.headers["location"])
    assert at_provider.status_code == 302, at_provider.text
    back = urlsplit(at_provider.headers["location"])
    assert back.path == f"/v1/auth/oidc/{slug}/callback"
    return f"{back.path}?{back.query}"


async def _sign_in(client: httpx.AsyncClient, slug: str) -> httpx.Response:
    return await client.get(await _to_callback(client, slug))


async def _events(tenant_id: str, *types: str) -> list[Any]:
    conn = await owner_connection(database_url())
    try:
        return list(await conn.fetch(
            "SELECT type, subject_id, actor_id, data, audited, request_id FROM bus.outbox "
            "WHERE tenant_id = $1 AND type = ANY($2::text[]) ORDER BY position",
            uuid.UUID(tenant_id), list(types),
        ))
    finally:
        await conn.close()


async def _me(client: httpx.AsyncClient, access_token: str) -> dict[str, Any]:
    response = await client.get(
        "/v1/users/me", headers={"Authorization": f"Bearer {access_token}"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# ---- the sign-in ----------------------------------------------------------------------------
async def test_start_redirects_to_the_issuer_with_pkce_state_and_nonce(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    await _configure(sso, tenant, provider)
    start = await sso.get(f"/v1/auth/oidc/{tenant.slug}/start")
    assert start.status_code == 302
    assert start.headers["cache-control"] == "no-store"
    location = urlsplit(start.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == provider.issuer
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == provider.client_id
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 43
    assert len(query["nonce"]) >= 43
    assert set(query["scope"].split()) >= {"openid", "email"}
    assert query["redirect_uri"].endswith(f"/v1/auth/oidc/{tenant.slug}/callback")
    again = await sso.get(f"/v1/auth/oidc/{tenant.slug}/start")
    assert parse_qs(urlsplit(again.headers["location"]).query)["state"][0] != query["state"]


async def test_a_new_verified_email_becomes_a_member_and_the_tokens_work(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    await _configure(sso, tenant, provider)
    provider.person = _person("Grace.Hopper+x@idp.example", given_name="Grace")
    response = await _sign_in(sso, tenant.slug)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    pair = response.json()
    assert pair["tokenType"] == "Bearer"
    assert pair["expiresIn"] > 0
    me = await _me(sso, pair["accessToken"])
    assert (me["email"], me["role"], me["status"]) == (
        "Grace.Hopper+x@idp.example", "MEMBER", "ACTIVE")
    assert me["username"] == "Grace.Hopperx"
    assert me["firstName"] == "Grace"
    refreshed = await sso.post("/v1/auth/refresh", json={"refreshToken": pair["refreshToken"]})
    assert refreshed.status_code == 200
    created = await _events(tenant.id, "user.created", "auth.login_succeeded")
    mine = [e for e in created if e["subject_id"] == me["id"]]
    assert [(e["type"], e["audited"]) for e in mine] == [
        ("user.created", True), ("auth.login_succeeded", False)]
    assert all(str(e["actor_id"]) == me["id"] for e in mine)


async def test_an_existing_user_is_linked_by_verified_email(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    await _configure(sso, tenant, provider, jitProvisioning=False)
    member = tenant.users["MEMBER"]
    provider.person = _person((member.email or "").upper())
    response = await _sign_in(sso, tenant.slug)
    assert response.status_code == 200, response.text
    assert (await _me(sso, response.json()["accessToken"]))["id"] == member.id
    login = [e for e in await _events(tenant.id, "auth.login_succeeded")
             if e["subject_id"] == member.id][-1]  # after the password login of add_user
    assert login["audited"]
    assert '"oidc"' in login["data"]


async def test_once_linked_the_subject_signs_in_and_no_other_subject_takes_the_account(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    await _configure(sso, tenant, provider, jitProvisioning=False)
    member = tenant.users["MEMBER"]
    linked = _person(member.email)
    provider.person = linked
    assert (await _sign_in(sso, tenant.slug)).status_code == 200
    # The issuer's account changed its email (unverified now): the link still holds.
    provider.person = Person(linked.sub, "renamed@idp.example", email_verified=False)
    again = await _sign_in(sso, tenant.slug)
    assert again.status_code == 200, again.text
    assert (await _me(sso, again.json()["accessToken"]))["id"] == member.id
    # Another subject of the issuer showing the same verified email is not given it.
    provider.person = _person(member.email)
    taken = await _sign_in(sso, tenant.slug)
    assert taken.status_code == 401
    failed = await _events(tenant.id, "auth.login_failed")
    assert '"oidc_linked_to_another_subject"' in failed[-1]["data"]
    assert failed[-1]["subject_id"] == member.id


async def test_without_provisioning_an_unknown_identity_is_refused(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    await _configure(sso, tenant, provider, jitProvisioning=False)
    provider.person = _person()
    response = await _sign_in(sso, tenant.slug)
    assert response.status_code == 403, response.text
    assert response.json()["type"].endswith("/sso-no-account")
    users = await sso.get("/v1/users?limit=200", headers=tenant.admin.headers)
    assert provider.person.email not in {u["email"] for u in users.json()["items"]}
    failed = await _events(tenant.id, "auth.login_failed")
    assert '"oidc_no_account"' in failed[-1]["data"]


@pytest.mark.parametrize("verified", [False, "false", None])
async def test_an_unverified_email_is_not_linked(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider, verified: object
) -> None:
    await _configure(sso, tenant, provider)
    provider.person = _person(tenant.users["MEMBER"].email, email_verified=verified)
    response = await _sign_in(sso, tenant.slug)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    failed = await _events(tenant.id, "auth.login_failed")
    assert '"oidc_email_unverified"' in failed[-1]["data"]


async def test_an_inactive_user_is_refused_like_a_login(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    await _configure(sso, tenant, provider)
    member = tenant.users["MEMBER"]
    gone = await sso.delete(f"/v1/users/{member.id}", headers=tenant.admin.headers)
    assert gone.status_code == 204
    provider.person = _person(member.email)
    response = await _sign_in(sso, tenant.slug)
    assert response.status_code == 401
    failed = await _events(tenant.id, "auth.login_failed")
    assert failed[-1]["subject_id"] == member.id
    assert '"oidc_inactive"' in failed[-1]["data"]


async def test_the_tokens_go_to_the_app_in_the_fragment_when_it_has_a_url(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    await _configure(sso, tenant, provider, appRedirectUrl="https://app.example/signed-in")
    provider.person = _person()
    response = await _sign_in(sso, tenant.slug)
    assert response.status_code == 302, response.text
    target = urlsplit(response.headers["location"])
    assert (target.netloc, target.path, target.query) == ("app.example", "/signed-in", "")
    fragment = {k: v[0] for k, v in parse_qs(target.fragment).items()}
    assert fragment["tokenType"] == "Bearer"
    assert (await _me(sso, fragment["accessToken"]))["email"] == provider.person.email


async def test_the_issuer_s_new_key_is_fetched_when_a_token_names_it(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    await _configure(sso, tenant, provider)
    provider.person = _person()
    assert (await _sign_in(sso, tenant.slug)).status_code == 200
    rotated = new_key(unique("k"))
    provider.published.insert(0, rotated)
    try:
        before = provider.jwks_requests
        provider.person = _person()
        assert (await _sign_in(sso, tenant.slug)).status_code == 200
        assert provider.jwks_requests == before + 1
    finally:
        provider.published.remove(rotated)


# ---- what the callback refuses --------------------------------------------------------------
REFUSALS: dict[str, tuple[Any, str]] = {
    "forged with the published kid": ("forge-same-kid", "oidc_bad_signature"),
    "forged with an unknown kid": ("forge-new-kid", "oidc_bad_signature"),
    "wrong nonce": ({"nonce": "not-the-one-sent"}, "oidc_invalid_nonce"),
    "no nonce": ({"nonce": None}, "oidc_missing_claim"),
    "wrong audience": ({"aud": "someone-else"}, "oidc_invalid_aud"),
    "wrong issuer": ({"iss": "https://evil.example"}, "oidc_invalid_iss"),
    "expired": ({"exp": 1_000_000_000, "iat": 999_999_000}, "oidc_token_expired"),
    "issued in the future": ({"iat": 4_000_000_000, "exp": 4_000_000_300},
                             "oidc_invalid_iat"),
    "another party's token among audiences": (
        {"aud": ["pantherahive-test", "other"], "azp": "other"}, "oidc_invalid_azp"),
}


@pytest.mark.parametrize("case", list(REFUSALS), ids=list(REFUSALS))
async def test_a_bad_id_token_is_refused(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider, case: str
) -> None:
    await _configure(sso, tenant, provider)
    member = tenant.users["MEMBER"]
    provider.person = _person(member.email)
    tamper, reason = REFUSALS[case]
    if tamper == "forge-same-kid":
        provider.signing_key = new_key(provider.published[0].kid or "k1")
    elif tamper == "forge-new-kid":
        provider.signing_key = new_key(unique("forged"))
    else:
        provider.tamper = tamper
    response = await _sign_in(sso, tenant.slug)
    assert response.status_code == 401, response.text
    assert response.json()["type"].endswith("/sso-sign-in-failed")
    assert "accessToken" not in response.text
    failed = await _events(tenant.id, "auth.login_failed")
    assert f'"{reason}"' in failed[-1]["data"], failed[-1]["data"]
    assert failed[-1]["actor_id"] is None


async def test_a_replayed_state_is_refused(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    await _configure(sso, tenant, provider)
    provider.person = _person()
    callback = await _to_callback(sso, tenant.slug)
    first = await sso.get(callback)
    assert first.status_code == 200
    assert "max-age=0" in first.headers["set-cookie"].lower()  # the binding cookie goes
    replay = await sso.get(callback)
    assert replay.status_code == 401
    failed = await _events(tenant.id, "auth.login_failed")
    assert '"oidc_state_invalid"' in failed[-1]["data"]


async def test_a_callback_opened_in_another_browser_is_refused(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    """Login CSRF: the callback URL of someone's own sign-in, sent to a victim, must not
    sign the victim's browser in as that someone."""
    await _configure(sso, tenant, provider)
    provider.person = _person()
    callback = await _to_callback(sso, tenant.slug)
    app = sso.app  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40001))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as victim:
        refused = await victim.get(callback)
    assert refused.status_code == 401
    failed = await _events(tenant.id, "auth.login_failed")
    assert '"oidc_browser_mismatch"' in failed[-1]["data"]
    assert (await sso.get(callback)).status_code == 401  # and the state is spent


async def test_a_state_is_good_only_at_its_own_tenant(
    sso: httpx.AsyncClient, tenant: TenantHandle, tenant_factory: Any, provider: OidcProvider
) -> None:
    other = await tenant_factory()
    await _configure(sso, tenant, provider)
    await _configure(sso, other, provider)
    provider.person = _person()
    callback = await _to_callback(sso, tenant.slug)
    elsewhere = callback.replace(f"/oidc/{tenant.slug}/", f"/oidc/{other.slug}/")
    refused = await sso.get(elsewhere)
    assert refused.status_code == 401
    assert '"oidc_state_invalid"' in (await _events(other.id, "auth.login_failed"))[-1]["data"]
    assert (await sso.get(callback)).status_code == 200  # still unused at its own tenant


async def test_an_unknown_or_missing_state_and_a_provider_error_are_refused(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    await _configure(sso, tenant, provider)
    base = f"/v1/auth/oidc/{tenant.slug}/callback"
    assert (await sso.get(f"{base}?code=abc")).status_code == 422
    assert (await sso.get(f"{base}?code=abc&state=invented")).status_code == 401
    start = await sso.get(f"/v1/auth/oidc/{tenant.slug}/start")
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    denied = await sso.get(f"{base}?error=access_denied&state={state}")
    assert denied.status_code == 401
    failed = await _events(tenant.id, "auth.login_failed")
    assert '"oidc_provider_error"' in failed[-1]["data"]


async def test_sign_in_needs_enabled_sso_at_a_known_tenant(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    assert (await sso.get(f"/v1/auth/oidc/{tenant.slug}/start")).status_code == 404
    assert (await sso.get("/v1/auth/oidc/no-such-tenant-x/start")).status_code == 404
    await _configure(sso, tenant, provider, enabled=False)
    response = await sso.get(f"/v1/auth/oidc/{tenant.slug}/start")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_unreachable_issuer_is_503(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    await _configure(sso, tenant, provider, issuer=closed)
    response = await sso.get(f"/v1/auth/oidc/{tenant.slug}/start")
    assert response.status_code == 503
    assert "retry-after" in response.headers


# ---- the settings ---------------------------------------------------------------------------
async def test_settings_are_admin_only_and_never_show_the_secret(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    empty = await sso.get("/v1/tenant/sso", headers=tenant.admin.headers)
    assert empty.status_code == 200
    assert empty.json()["issuer"] is None
    assert empty.json()["clientSecretSet"] is False
    put = await _configure(sso, tenant, provider)
    got = await sso.get("/v1/tenant/sso", headers=tenant.admin.headers)
    for response in (put, got):
        body = response.json()
        assert provider.client_secret not in response.text
        assert "clientSecret" not in body
        assert body["clientSecretSet"] is True
        assert body["issuer"] == provider.issuer
        assert body["redirectUri"].endswith(f"/v1/auth/oidc/{tenant.slug}/callback")
    for role in ("MANAGER", "MEMBER"):
        actor: Actor = tenant.users[role]
        assert (await sso.get("/v1/tenant/sso", headers=actor.headers)).status_code == 403
        refused = await sso.put("/v1/tenant/sso", headers=actor.headers, json={
            "issuer": "https://evil.example", "clientId": "x", "clientSecret": "y",
            "enabled": True, "jitProvisioning": True, "require2fa": False})
        assert refused.status_code == 403
    assert (await sso.get("/v1/tenant/sso")).status_code == 401
    denied = [e["data"] for e in await _events(tenant.id, "authz.denied")]
    assert sum('"tenant.read_sso"' in d for d in denied) == 2
    assert sum('"tenant.update_sso"' in d for d in denied) == 2
    conn = await owner_connection(database_url())
    try:
        stored = await conn.fetchval(
            "SELECT client_secret_enc FROM identity.tenant_sso WHERE tenant_id = $1",
            uuid.UUID(tenant.id))
    finally:
        await conn.close()
    assert provider.client_secret.encode() not in stored


async def test_each_settings_write_is_audited_once_without_the_secret(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    body = {"issuer": provider.issuer, "clientId": provider.client_id,
            "clientSecret": provider.client_secret, "enabled": True,
            "jitProvisioning": False, "require2fa": True}
    first = await sso.put("/v1/tenant/sso", json=body, headers={
        **tenant.admin.headers, "X-Request-ID": "sso-first"})
    assert first.status_code == 200
    assert first.json()["require2fa"] is True
    same = {k: v for k, v in body.items() if k != "clientSecret"}
    unchanged = await sso.put("/v1/tenant/sso", json=same, headers={
        **tenant.admin.headers, "X-Request-ID": "sso-same"})
    assert unchanged.status_code == 200
    new_secret = await sso.put("/v1/tenant/sso", json={**body, "clientSecret": "rotated-1"},
                               headers={**tenant.admin.headers, "X-Request-ID": "sso-secret"})
    assert new_secret.status_code == 200
    events = await _events(tenant.id, "tenant.sso_updated")
    assert [e["request_id"] for e in events] == ["sso-first", "sso-secret"]
    assert all(e["audited"] and str(e["actor_id"]) == tenant.admin.id for e in events)
    assert all(provider.client_secret not in e["data"] and "rotated-1" not in e["data"]
               for e in events)
    assert '"require2fa": [false, true]' in events[0]["data"]
    assert '"clientSecretChanged": true' in events[1]["data"]
    assert '"changes": {}' in events[1]["data"]


async def test_the_first_configuration_needs_a_secret_and_the_shape_is_checked(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    body = {"issuer": provider.issuer, "clientId": "c", "enabled": True,
            "jitProvisioning": True, "require2fa": False}
    response = await sso.put("/v1/tenant/sso", json=body, headers=tenant.admin.headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "clientSecret"
    for bad in ({"issuer": "ftp://idp.example"}, {"unknown": 1}, {"enabled": None}):
        response = await sso.put("/v1/tenant/sso", json={**body, "clientSecret": "s", **bad},
                                 headers=tenant.admin.headers)
        assert response.status_code == 422, bad


async def test_http_issuers_are_refused_unless_the_platform_allows_them(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    response = await client.put("/v1/tenant/sso", headers=tenant.admin.headers, json={
        "issuer": "http://idp.example", "clientId": "c", "clientSecret": "s",
        "enabled": True, "jitProvisioning": True, "require2fa": False})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "issuer"


async def test_a_settings_change_mid_sign_in_voids_it(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    await _configure(sso, tenant, provider)
    provider.person = _person()
    callback = await _to_callback(sso, tenant.slug)
    await _configure(sso, tenant, provider, clientId="another-client")
    response = await sso.get(callback)
    assert response.status_code == 401
    failed = await _events(tenant.id, "auth.login_failed")
    assert '"oidc_settings_changed"' in failed[-1]["data"]


async def test_a_jit_username_is_made_unique(
    sso: httpx.AsyncClient, tenant: TenantHandle, provider: OidcProvider
) -> None:
    await _configure(sso, tenant, provider)
    taken = await add_user(sso, tenant, "MEMBER", username=unique("dup"))
    provider.person = _person(f"{taken.username}@elsewhere.example")
    response = await _sign_in(sso, tenant.slug)
    assert response.status_code == 200, response.text
    me = await _me(sso, response.json()["accessToken"])
    assert me["username"] == f"{taken.username}-2"


async def test_sso_rows_are_hidden_from_other_tenants(
    sso: httpx.AsyncClient, tenant: TenantHandle, tenant_factory: Any, provider: OidcProvider
) -> None:
    other = await tenant_factory()
    for handle in (tenant, other):
        await _configure(sso, handle, provider)
        provider.person = _person()
        assert (await _sign_in(sso, handle.slug)).status_code == 200
    tables = ("identity.tenant_sso", "identity.oidc_login_states", "identity.sso_links")
    conn = await owner_connection(database_url())
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE pantherahive_app")
            for table in tables:
                assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table  # noqa: S608
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant.id)
            for table in tables:
                seen = await conn.fetch(f"SELECT DISTINCT tenant_id FROM {table}")  # noqa: S608
                assert [str(row["tenant_id"]) for row in seen] == [tenant.id], table
    finally:
        await conn.close()
