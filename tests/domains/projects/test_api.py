"""``projects.api``: the contract the tasks service codes against, exercised on the real
database under row-level security (the app role, the caller's tenant in scope)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.errors import NotFound
from pantherahive.domains.projects.api import (
    ProjectAccess,
    ProjectRole,
    existing_project_ids,
    is_project_member,
    project_access,
    readable_project_ids,
)
from pantherahive.infra.context import bind_principal
from pantherahive.infra.db.engine import set_tenant
from pantherahive.infra.security.principal import AuthContext, Role
from tests.conftest import Actor, TenantHandle, add_user, create_tenant
from tests.domains.projects.helpers import create_project, put_member


@asynccontextmanager
async def tenant_session(client: httpx.AsyncClient, tenant_id: str) -> AsyncIterator[AsyncSession]:
    async with client.app.state.platform.db.sessions() as session:  # type: ignore[attr-defined]
        await set_tenant(session, tenant_id)
        bind_principal(UUID(tenant_id), None)  # as a request or a consumer has it
        yield session
        await session.rollback()


def auth_of(tenant: TenantHandle, actor: Actor) -> AuthContext:
    return AuthContext(UUID(tenant.id), UUID(actor.id), Role(actor.role))


async def test_project_access_by_membership(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    admin, manager = tenant.admin, tenant.users["MANAGER"]
    editor = await add_user(client, tenant, "MEMBER")
    viewer = await add_user(client, tenant, "MEMBER")
    stranger = await add_user(client, tenant, "MANAGER")
    project = await create_project(client, admin, ownerId=manager.id)
    await put_member(client, admin, project["id"], editor.id, "EDITOR")
    await put_member(client, admin, project["id"], viewer.id, "VIEWER")
    pid = UUID(project["id"])

    cases = [
        (manager, ProjectAccess(pid, ProjectRole.OWNER, can_read=True, can_write_tasks=True)),
        (editor, ProjectAccess(pid, ProjectRole.EDITOR, can_read=True, can_write_tasks=True)),
        (viewer, ProjectAccess(pid, ProjectRole.VIEWER, can_read=True, can_write_tasks=False)),
        (admin, ProjectAccess(pid, None, can_read=True, can_write_tasks=True)),
    ]
    async with tenant_session(client, tenant.id) as session:
        for actor, want in cases:
            assert await project_access(session, auth_of(tenant, actor), pid) == want
        with pytest.raises(NotFound):
            await project_access(session, auth_of(tenant, stranger), pid)
        with pytest.raises(NotFound):
            await project_access(session, auth_of(tenant, admin), uuid.uuid4())

        for actor in (manager, editor, viewer):
            assert await is_project_member(session, pid, UUID(actor.id))
        for actor in (admin, stranger):
            assert not await is_project_member(session, pid, UUID(actor.id))
        assert not await is_project_member(session, uuid.uuid4(), UUID(manager.id))


async def test_another_tenants_project_is_not_found(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    project = await create_project(client, tenant.admin)
    other = await create_tenant(client)
    async with tenant_session(client, other.id) as session:
        with pytest.raises(NotFound):
            await project_access(session, auth_of(other, other.admin), UUID(project["id"]))
        # even asking about the right user: RLS hides the other tenant's rows
        assert not await is_project_member(session, UUID(project["id"]), UUID(tenant.admin.id))


async def test_readable_project_ids(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    admin, manager, member = tenant.admin, tenant.users["MANAGER"], tenant.users["MEMBER"]
    owned = await create_project(client, manager)
    shared = await create_project(client, admin)
    await create_project(client, admin)  # nobody but the ADMIN sees this one
    await put_member(client, admin, shared["id"], member.id, "VIEWER")
    await put_member(client, admin, shared["id"], manager.id, "EDITOR")

    async with tenant_session(client, tenant.id) as session:
        assert await readable_project_ids(session, auth_of(tenant, admin)) is None
        manager_ids = await readable_project_ids(session, auth_of(tenant, manager))
        assert manager_ids is not None
        assert set(manager_ids) == {UUID(owned["id"]), UUID(shared["id"])}
        assert await readable_project_ids(session, auth_of(tenant, member)) == [UUID(shared["id"])]


async def test_existing_project_ids(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    kept = await create_project(client, tenant.admin)
    deleted = await create_project(client, tenant.admin)
    theirs = await create_project(client, (await create_tenant(client)).admin)
    response = await client.delete(f"/v1/projects/{deleted['id']}", headers=tenant.admin.headers)
    assert response.status_code == 204
    asked = {UUID(p["id"]) for p in (kept, deleted, theirs)} | {uuid.uuid4()}
    async with tenant_session(client, tenant.id) as session:
        assert await existing_project_ids(session, asked) == {UUID(kept["id"])}
        assert await existing_project_ids(session, set()) == set()
