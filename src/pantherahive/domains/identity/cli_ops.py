"""Identity operations for the command line: each runs in one committed transaction."""

from __future__ import annotations

from uuid import UUID

from pantherahive.core.errors import NotFound
from pantherahive.domains.identity.repository import TenantDirectory
from pantherahive.domains.identity.schemas import TenantAdminCreate, TenantCreate, UserCreate
from pantherahive.domains.identity.service import IdentityService
from pantherahive.infra.context import begin_context, bind_principal
from pantherahive.infra.db.engine import Database, set_tenant
from pantherahive.infra.security.principal import Role

DEMO_PASSWORD = "panthera-demo-1"  # noqa: S105 - printed to the user on purpose
DEMO_USERS = (("alice", "ADMIN"), ("bob", "MANAGER"), ("carol", "MEMBER"))


async def create_tenant(
    db: Database,
    identity: IdentityService,
    *,
    slug: str,
    name: str,
    username: str,
    email: str | None,
    password: str,
) -> UUID:
    begin_context("cli", None)
    body = TenantCreate(
        name=name,
        slug=slug,
        admin=TenantAdminCreate(username=username, password=password, email=email, role=Role.ADMIN),
    )
    async with db.sessions() as session:
        tenant, _user, _tokens = await identity.create_tenant(session, body=body)
        await session.commit()
    return tenant.id


async def create_user(
    db: Database,
    identity: IdentityService,
    *,
    tenant: str,
    username: str,
    role: str,
    email: str | None,
    password: str,
) -> UUID:
    begin_context("cli", None)
    body = UserCreate(username=username, password=password, role=Role(role), email=email)
    async with db.sessions() as session:
        tenant_id = await TenantDirectory(session).tenant_id_for_slug(tenant)
        if tenant_id is None:
            raise NotFound(f"No tenant with slug {tenant!r}.")
        await set_tenant(session, tenant_id)
        bind_principal(tenant_id, None)
        # The CLI acts as the system, with the rights of an ADMIN.
        user = await identity.add_user(session, body)
        await session.commit()
    return user.id


async def create_demo(db: Database, identity: IdentityService) -> bool:
    async with db.sessions() as session:
        exists = await TenantDirectory(session).tenant_id_for_slug("demo")
    if exists is not None:
        return False
    admin, *others = DEMO_USERS
    await create_tenant(
        db,
        identity,
        slug="demo",
        name="Demo",
        username=admin[0],
        email=f"{admin[0]}@demo.example",
        password=DEMO_PASSWORD,
    )
    for username, role in others:
        await create_user(
            db,
            identity,
            tenant="demo",
            username=username,
            role=role,
            email=f"{username}@demo.example",
            password=DEMO_PASSWORD,
        )
    return True
