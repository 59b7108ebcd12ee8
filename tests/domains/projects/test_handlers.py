"""Projects consuming ``user.deactivated``: the user leaves the projects they are a member
of, once, however often the event is delivered."""

from __future__ import annotations

import httpx

from pantherahive.domains.projects.handlers import CONSUMERS
from pantherahive.infra.bus.embedded import drain
from tests.conftest import TenantHandle, add_user
from tests.domains.projects.helpers import create_project, outbox, put_member


async def test_deactivated_user_leaves_projects_but_keeps_ownership(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    admin = tenant.admin
    leaver = await add_user(client, tenant, "MANAGER")
    shared = await create_project(client, admin)
    other = await create_project(client, admin)
    owned = await create_project(client, leaver)
    await put_member(client, admin, shared["id"], leaver.id, "EDITOR")
    await put_member(client, admin, other["id"], leaver.id, "VIEWER")

    response = await client.delete(f"/v1/users/{leaver.id}", headers=admin.headers)
    assert response.status_code == 204
    db = client.app.state.platform.db  # type: ignore[attr-defined]
    await drain(db, CONSUMERS)
    await drain(db, CONSUMERS)  # a second pass finds nothing new to do

    async def member_ids(project_id: str) -> set[str]:
        page = await client.get(f"/v1/projects/{project_id}/members", headers=admin.headers)
        return {m["userId"] for m in page.json()["items"]}

    assert leaver.id not in await member_ids(shared["id"])
    assert leaver.id not in await member_ids(other["id"])
    assert await member_ids(owned["id"]) == {leaver.id}
    removals = [e for e in await outbox(client, tenant.id)
                if e["type"] == "project.member_removed"]  # fmt: skip
    assert sorted((e["subject_id"], e["data"]["role"]) for e in removals) == sorted(
        [(shared["id"], "EDITOR"), (other["id"], "VIEWER")]
    )
    assert all(e["data"]["reason"] == "user.deactivated" for e in removals)
    assert all(str(e["actor_id"]) == admin.id for e in removals)
