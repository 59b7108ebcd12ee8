"""Tenant isolation through the API (404, never 403) and in the database itself (RLS)."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from tests.conftest import TenantFactory, TenantHandle
from tests.support.db import database_url
from tests.support.servers import owner_connection


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("GET", None),
        ("PATCH", {"firstName": "Mallory"}),
        ("PATCH", {"role": "MEMBER"}),
        ("DELETE", None),
    ],
)
async def test_another_tenants_user_is_404_for_every_user_route(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    tenant_factory: TenantFactory,
    method: str,
    body: dict[str, str] | None,
) -> None:
    other = await tenant_factory()
    response = await client.request(
        method, f"/v1/users/{other.admin.id}", headers=tenant.admin.headers, json=body
    )
    assert response.status_code == 404
    missing = await client.request(
        method, f"/v1/users/{uuid.uuid4()}", headers=tenant.admin.headers, json=body
    )
    strip = lambda r: {k: v for k, v in r.json().items() if k != "instance"}  # noqa: E731
    assert strip(response) == strip(missing)
    assert (other.admin.email or "") not in response.text
    untouched = await client.get(f"/v1/users/{other.admin.id}", headers=other.admin.headers)
    assert untouched.json()["status"] == "ACTIVE"
    assert untouched.json()["firstName"] is None


async def test_lists_never_show_another_tenant(
    client: httpx.AsyncClient, tenant: TenantHandle, tenant_factory: TenantFactory
) -> None:
    other = await tenant_factory()
    listed = await client.get("/v1/users", headers=tenant.admin.headers, params={"limit": 200})
    ids = {u["id"] for u in listed.json()["items"]}
    assert other.admin.id not in ids
    assert tenant.admin.id in ids


async def test_malformed_ids_in_paths_are_404(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    response = await client.get("/v1/users/not-a-uuid", headers=tenant.admin.headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_rls_hides_every_row_without_the_tenant_setting(
    tenant: TenantHandle, tenant_factory: TenantFactory
) -> None:
    other = await tenant_factory()
    conn = await owner_connection(database_url())
    try:
        owner_sees = await conn.fetchval("SELECT count(*) FROM identity.users")
        assert owner_sees >= 4
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE pantherahive_app")
            for table in (
                "identity.users",
                "identity.tenants",
                "identity.refresh_tokens",
                "identity.sessions",
                "identity.totp_credentials",
                "identity.recovery_codes",
                "identity.mfa_challenges",
                "bus.outbox",
            ):
                assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table  # noqa: S608
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant.id)
            visible = await conn.fetch("SELECT DISTINCT tenant_id::text AS t FROM identity.users")
            assert [row["t"] for row in visible] == [tenant.id]
            assert other.admin.id not in {
                str(r["id"]) for r in await conn.fetch("SELECT id FROM identity.users")
            }
    finally:
        await conn.close()


async def test_app_role_cannot_write_into_another_tenant(tenant: TenantHandle) -> None:
    conn = await owner_connection(database_url())
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE pantherahive_app")
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant.id)
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
                await conn.execute(
                    "INSERT INTO identity.users (id, tenant_id, username, role, status, "
                    "password_hash) VALUES (gen_random_uuid(), gen_random_uuid(), 'x', "
                    "'ADMIN', 'ACTIVE', 'h')"
                )
    finally:
        await conn.close()
