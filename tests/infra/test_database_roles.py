"""The app's own database login cannot escalate (docs/configuration.md, Database roles).

Every test connects with the credentials the processes use (``pantherahive_app``'s own
URL, no role switch) and tries what an attacker holding that connection would try.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from pantherahive.consumers import all_consumers
from pantherahive.infra.bus.embedded import drain
from pantherahive.infra.db.engine import APP_ROLE, Database
from pantherahive.infra.db.migrate import upgrade
from pantherahive.infra.db.roles import login_problems, with_login
from pantherahive.infra.security.signing_keys import KeyRing
from pantherahive.main import create_app
from tests.conftest import PASSWORD, TenantFactory, TenantHandle, make_settings, running_app
from tests.support.servers import (
    app_connection,
    app_url,
    create_database,
    drop_database,
    owner_connection,
)

TENANT_COLUMN_TABLES = """
    SELECT c.oid::regclass::text AS name, c.relrowsecurity AS enabled,
           c.relforcerowsecurity AS forced
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname IN ('platform', 'bus', 'identity', 'projects', 'tasks', 'audit',
                        'notifications')
      AND (EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                   AND a.attname = 'tenant_id' AND NOT a.attisdropped)
           OR c.oid = 'identity.tenants'::regclass)
    ORDER BY 1
"""


@pytest.fixture
async def app_conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await app_connection(database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def two_tenants(tenant_factory: TenantFactory) -> tuple[TenantHandle, TenantHandle]:
    return await tenant_factory(), await tenant_factory()


async def owner_role(database_url: str) -> str:
    conn = await owner_connection(database_url)
    try:
        owner: str = await conn.fetchval(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'identity' "
            "AND tablename = 'users'"
        )
    finally:
        await conn.close()
    return owner


async def users_seen(conn: asyncpg.Connection, tenant: str | None, of: str) -> int:
    """How many of tenant ``of``'s users the connection sees, with ``tenant`` in scope."""
    async with conn.transaction():
        if tenant is not None:
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant)
        seen: int = await conn.fetchval(
            "SELECT count(*) FROM identity.users WHERE tenant_id = $1", uuid.UUID(of)
        )
    return seen


async def test_the_app_logs_in_as_itself_and_reset_role_gives_nothing_back(
    app_conn: asyncpg.Connection, two_tenants: tuple[TenantHandle, TenantHandle]
) -> None:
    mine, other = two_tenants
    who = await app_conn.fetchrow("SELECT current_user, session_user")
    assert who is not None
    assert tuple(who) == (APP_ROLE, APP_ROLE)
    await app_conn.execute("RESET ROLE")
    await app_conn.execute("RESET SESSION AUTHORIZATION")
    assert await app_conn.fetchval("SELECT current_user") == APP_ROLE
    assert await users_seen(app_conn, mine.id, of=mine.id) == 1
    assert await users_seen(app_conn, mine.id, of=other.id) == 0


async def test_the_app_cannot_become_the_owner(
    app_conn: asyncpg.Connection, database_url: str
) -> None:
    owner = await owner_role(database_url)
    assert owner != APP_ROLE
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied to set role"):
        await app_conn.execute(f'SET ROLE "{owner}"')
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_conn.execute(f'SET SESSION AUTHORIZATION "{owner}"')
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_conn.execute("CREATE ROLE mallory LOGIN SUPERUSER")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner"):
        await app_conn.execute("ALTER TABLE identity.users DISABLE ROW LEVEL SECURITY")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner"):
        await app_conn.execute("DROP POLICY tenant_isolation ON identity.users")
    assert await app_conn.fetchval("SELECT current_user") == APP_ROLE


async def test_row_security_off_is_refused_rather_than_bypassing(
    app_conn: asyncpg.Connection, two_tenants: tuple[TenantHandle, TenantHandle]
) -> None:
    mine, other = two_tenants
    await app_conn.execute("SET row_security = off")
    for tenant in (None, mine.id):
        with pytest.raises(
            asyncpg.InsufficientPrivilegeError, match="row-level security policy"
        ):
            await users_seen(app_conn, tenant, of=other.id)


async def test_without_a_tenant_setting_no_tenant_rows_are_visible(
    app_conn: asyncpg.Connection, two_tenants: tuple[TenantHandle, TenantHandle]
) -> None:
    mine, other = two_tenants
    assert await users_seen(app_conn, None, of=mine.id) == 0
    assert await users_seen(app_conn, None, of=other.id) == 0
    for table in ("identity.users", "identity.tenants", "bus.outbox", "audit.audit_events"):
        assert await app_conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table  # noqa: S608
    # a tenant setting that is not a tenant sees nothing either
    assert await users_seen(app_conn, str(uuid.uuid4()), of=other.id) == 0


async def test_the_audit_trail_stays_append_only_for_the_app(
    app_conn: asyncpg.Connection, tenant: TenantHandle
) -> None:
    tenant_id = uuid.UUID(tenant.id)
    for statement in (
        "UPDATE audit.audit_events SET action = 'forged' WHERE tenant_id = $1",
        "DELETE FROM audit.audit_events WHERE tenant_id = $1",
    ):
        async with app_conn.transaction():
            await app_conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant.id)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app_conn.execute(statement, tenant_id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_conn.execute("TRUNCATE audit.audit_events")


async def test_every_tenant_table_forces_row_level_security(database_url: str) -> None:
    conn = await owner_connection(database_url)
    try:
        tables = await conn.fetch(TENANT_COLUMN_TABLES)
    finally:
        await conn.close()
    assert len(tables) > 15
    weak = [row["name"] for row in tables if not (row["enabled"] and row["forced"])]
    assert not weak, f"tenant tables without FORCE ROW LEVEL SECURITY: {weak}"


async def test_the_startup_check_passes_the_app_login_and_names_what_is_wrong_with_the_owner(
    database_url: str,
) -> None:
    app = Database.connect(app_url(database_url), pool_size=1, max_overflow=0)
    owner = Database.connect(database_url, pool_size=1, max_overflow=0)
    try:
        assert await login_problems(app) == []
        problems = await login_problems(owner)
    finally:
        await app.dispose()
        await owner.dispose()
    assert any("owner of the platform's tables" in problem for problem in problems)


async def test_production_refuses_to_serve_as_the_owner(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, env="production", jwt_secret="a3f9c2e7b1d84f06e5c9a27b3d1f8e40c6b2a9d7e3f1c5b8",
        signing_keys_dir=tmp_path / "keys",
    )
    KeyRing(tmp_path / "keys").add(activate=True)  # production creates no key itself
    app = create_app(settings, database_url=database_url)  # the owner's URL, not the app's
    with pytest.raises(RuntimeError, match="DATABASE_URL must log in as the least-privilege"):
        async with app.router.lifespan_context(app):
            pass


@pytest.mark.skipif(
    bool(os.environ.get("DATABASE_ADMIN_URL") or os.environ.get("DATABASE_URL")),
    reason="an external server's authentication is its own",
)
async def test_the_embedded_server_checks_the_app_logins_password(database_url: str) -> None:
    wrong = with_login(database_url, APP_ROLE, "not-the-password-" + "x" * 12)
    with pytest.raises(asyncpg.InvalidPasswordError):
        await owner_connection(wrong)


# ---- an owner that is not a superuser ---------------------------------------------------


async def _run_as_owner(admin_url: str, statements: list[str]) -> None:
    conn = await owner_connection(admin_url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def plain_owner(pg_server: str) -> AsyncIterator[tuple[str, str]]:
    """A role that is no superuser (BYPASSRLS and CREATEROLE, as docs/configuration.md asks
    of a production owner) owning a fresh database: ``(role, its database URL)``."""
    role = f"ph_owner_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    server_db = await create_database(pg_server)
    name = server_db.partition("?")[0].rsplit("/", 1)[1]
    await _run_as_owner(
        server_db,
        [
            f"CREATE ROLE {role} LOGIN PASSWORD '{password}' NOSUPERUSER BYPASSRLS CREATEROLE",
            f'ALTER DATABASE "{name}" OWNER TO {role}',
            # pantherahive_app exists already (the server's other databases use it): the
            # owner administers it, as the documented procedure grants
            f"GRANT {APP_ROLE} TO {role} WITH ADMIN OPTION",
        ],
    )
    try:
        yield role, with_login(server_db, role, password)
    finally:
        await drop_database(server_db)
        await _run_as_owner(pg_server, [f"DROP OWNED BY {role}", f"DROP ROLE {role}"])


async def test_with_an_owner_that_is_no_superuser_the_platform_still_serves_every_tenant(
    plain_owner: tuple[str, str], tmp_path: Path
) -> None:
    """FORCE binds the owner; its BYPASSRLS is what lets the SECURITY DEFINER doors (login
    by slug, the event runtime reading the outbox, search) serve every tenant."""
    role, owner_url = plain_owner
    await asyncio.to_thread(upgrade, owner_url)  # Alembic's env runs its own event loop
    conn = await owner_connection(owner_url)
    try:
        assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = $1", role) \
            is False
        assert await conn.fetchval(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'tasks' AND tablename = 'tasks'"
        ) == role
    finally:
        await conn.close()
    settings = make_settings(tmp_path, bus_run_consumers=False, notifications_worker_enabled=False)
    async with running_app(owner_url, settings) as client:
        slug = f"plain-{uuid.uuid4().hex[:8]}"
        created = await client.post(
            "/v1/tenants",
            json={"name": slug, "slug": slug, "admin": {"username": "ada", "password": PASSWORD}},
        )
        assert created.status_code == 201, created.text
        login = await client.post(
            "/v1/auth/login", json={"tenant": slug, "login": "ada", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['accessToken']}"}
        project = await client.post("/v1/projects", headers=headers, json={"name": "P"})
        assert project.status_code == 201, project.text
        task = await client.post(
            f"/v1/projects/{project.json()['id']}/tasks", headers=headers,
            json={"title": "Find the zebra"},
        )
        assert task.status_code == 201, task.text
        found = await client.get(
            f"/v1/projects/{project.json()['id']}/tasks", headers=headers,
            params={"q": "zebra"},
        )
        assert [t["id"] for t in found.json()["items"]] == [task.json()["id"]]
        # the runtime reads every tenant's outbox through the owner's door; the audit
        # consumer then records this tenant's trail, which its search finds
        platform = client.app.state.platform  # type: ignore[attr-defined]
        assert await drain(platform.db, all_consumers()) >= 3
        trail = await client.get("/v1/audit-events", headers=headers, params={"q": "zebra"})
        assert trail.status_code == 200, trail.text
        assert [e["action"] for e in trail.json()["items"]] == ["task.created"]


async def test_migrating_as_an_owner_that_cannot_bypass_rls_stops_with_the_reason(
    pg_server: str,
) -> None:
    role = f"ph_weak_{uuid.uuid4().hex[:8]}"
    server_db = await create_database(pg_server)
    name = server_db.partition("?")[0].rsplit("/", 1)[1]
    await _run_as_owner(
        server_db,
        [f"CREATE ROLE {role} LOGIN CREATEROLE", f'ALTER DATABASE "{name}" OWNER TO {role}'],
    )
    try:
        with pytest.raises(RuntimeError, match="BYPASSRLS"):
            await asyncio.to_thread(upgrade, with_login(server_db, role, "unused-password"))
    finally:
        await drop_database(server_db)
        await _run_as_owner(pg_server, [f"DROP OWNED BY {role}", f"DROP ROLE {role}"])
