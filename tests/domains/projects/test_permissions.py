"""The permission matrix: tenant role x project membership x action, over HTTP.

Expectations are written out here independently of ``permissions.py`` (whose table is
checked against them too), so a wrong entry in the table fails a test.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from pantherahive.domains.projects.permissions import (
    PROJECT_PERMISSIONS,
    ProjectAction,
    ProjectRole,
    project_may,
)
from pantherahive.infra.security.principal import Role
from tests.conftest import Actor, TenantHandle, add_user, create_tenant
from tests.domains.projects.helpers import create_project, outbox, put_member

ROLES = ("ADMIN", "MANAGER", "MEMBER")
MEMBERSHIPS = ("owner", "EDITOR", "VIEWER", "none")
ACTIONS = (
    "list-visible",
    "get",
    "create",
    "patch",
    "delete",
    "list-members",
    "put-member",
    "delete-member",
)
READ_ONLY = frozenset({"list-visible", "get", "create", "list-members"})
OK = {"list-visible": 200, "get": 200, "create": 201, "patch": 200, "delete": 204,
      "list-members": 200, "put-member": 200, "delete-member": 204}  # fmt: skip

# What a non-ADMIN gets on an existing project, by membership (ADMINs may do everything).
NON_ADMIN: dict[str, dict[str, int]] = {
    "get": {"owner": 200, "EDITOR": 200, "VIEWER": 200, "none": 404},
    "list-visible": {"owner": 200, "EDITOR": 200, "VIEWER": 200, "none": 404},
    "patch": {"owner": 200, "EDITOR": 403, "VIEWER": 403, "none": 404},
    "delete": {"owner": 204, "EDITOR": 403, "VIEWER": 403, "none": 404},
    "list-members": {"owner": 200, "EDITOR": 200, "VIEWER": 200, "none": 404},
    "put-member": {"owner": 200, "EDITOR": 403, "VIEWER": 403, "none": 404},
    "delete-member": {"owner": 204, "EDITOR": 403, "VIEWER": 403, "none": 404},
}


def expected(role: str, membership: str, action: str) -> int:
    """Status code expected; for list-visible, 200 means "the project is in the list" and
    404 "it is not"."""
    if action == "create":
        return 201 if role in {"ADMIN", "MANAGER"} else 403
    if role == "ADMIN":
        return OK[action]
    return NON_ADMIN[action][membership]


@dataclass
class World:
    """One tenant holding a user for every (role, membership) pair, plus a neutral owner
    for projects the actor does not own and a target user for member changes."""

    tenant: TenantHandle
    actors: dict[tuple[str, str], Actor] = field(default_factory=dict)
    neutral_owner: Actor | None = None
    target: Actor | None = None
    shared: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


@pytest.fixture(scope="module")
async def world(client: httpx.AsyncClient) -> World:
    tenant = await create_tenant(client)
    handle = World(tenant)
    for role, membership in itertools.product(ROLES, MEMBERSHIPS):
        handle.actors[role, membership] = await add_user(
            client, tenant, role, f"{role.lower()}-{membership.lower()}"
        )
    handle.neutral_owner = await add_user(client, tenant, "MANAGER", "neutral-owner")
    handle.target = await add_user(client, tenant, "MEMBER", "target")
    return handle


async def _project_for(
    client: httpx.AsyncClient, world: World, membership: str, actor: Actor
) -> dict[str, Any]:
    """A fresh project on which ``actor`` has ``membership``; the target is a VIEWER."""
    admin = world.tenant.admin
    assert world.neutral_owner is not None
    assert world.target is not None
    owner = actor if membership == "owner" else world.neutral_owner
    project = await create_project(client, admin, ownerId=owner.id)
    if membership in {"EDITOR", "VIEWER"}:
        await put_member(client, admin, project["id"], actor.id, membership)
    await put_member(client, admin, project["id"], world.target.id, "VIEWER")
    return project


async def _perform(
    client: httpx.AsyncClient, world: World, actor: Actor, action: str, project_id: str
) -> int:
    assert world.target is not None
    base = f"/v1/projects/{project_id}"
    headers = actor.headers
    if action == "list-visible":
        seen: set[str] = set()
        cursor = None
        while True:
            params = {"limit": 200} | ({"cursor": cursor} if cursor else {})
            response = await client.get("/v1/projects", headers=headers, params=params)
            assert response.status_code == 200, response.text
            seen |= {item["id"] for item in response.json()["items"]}
            cursor = response.json()["nextCursor"]
            if cursor is None:
                return 200 if project_id in seen else 404
    if action == "get":
        response = await client.get(base, headers=headers)
    elif action == "create":
        response = await client.post("/v1/projects", headers=headers, json={"name": "created"})
    elif action == "patch":
        response = await client.patch(base, headers=headers, json={"description": "changed"})
    elif action == "delete":
        response = await client.delete(base, headers=headers)
    elif action == "list-members":
        response = await client.get(f"{base}/members", headers=headers)
    elif action == "put-member":
        response = await client.put(
            f"{base}/members/{world.target.id}", headers=headers, json={"role": "EDITOR"}
        )
    else:
        response = await client.delete(f"{base}/members/{world.target.id}", headers=headers)
    return response.status_code


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("membership", MEMBERSHIPS)
@pytest.mark.parametrize("role", ROLES)
async def test_permission_matrix(
    client: httpx.AsyncClient, world: World, role: str, membership: str, action: str
) -> None:
    actor = world.actors[role, membership]
    admin = world.tenant.admin
    if action in READ_ONLY:  # nothing changes: one project serves every read-only action
        if (role, membership) not in world.shared:
            world.shared[role, membership] = await _project_for(client, world, membership, actor)
        project = world.shared[role, membership]
    else:
        project = await _project_for(client, world, membership, actor)
    want = expected(role, membership, action)

    status = await _perform(client, world, actor, action, project["id"])
    assert status == want, f"{role}/{membership}/{action}: {status} != {want}"
    if action in READ_ONLY:
        return

    # The project as an ADMIN sees it afterwards: a refused change changed nothing.
    after = await client.get(f"/v1/projects/{project['id']}", headers=admin.headers)
    members = await client.get(f"/v1/projects/{project['id']}/members", headers=admin.headers)
    if action == "delete" and want == 204:
        assert after.status_code == 404
        return
    assert after.status_code == 200
    roles = {m["userId"]: m["role"] for m in members.json()["items"]}
    if action == "patch":
        assert (after.json()["description"] == "changed") is (want == 200)
        assert after.json()["version"] == (2 if want == 200 else 1)
    if action == "put-member":
        assert roles[world.target.id] == ("EDITOR" if want == 200 else "VIEWER")
    if action == "delete-member":
        assert (world.target.id in roles) is (want != 204)

    denials = [
        event
        for event in await outbox(client, world.tenant.id, subject_id=project["id"])
        if event["type"] == "authz.denied" and str(event["actor_id"]) == actor.id
    ]
    if want == 403 and action != "create":
        assert len(denials) == 1
        assert denials[0]["data"]["role"] == role
        assert denials[0]["data"]["projectRole"] == membership
    else:
        assert denials == []  # 404 reveals nothing and records no denial of a hidden project


async def test_member_create_denial_is_recorded(client: httpx.AsyncClient, world: World) -> None:
    member = world.actors["MEMBER", "none"]
    response = await client.post("/v1/projects", headers=member.headers, json={"name": "no"})
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    denials = [
        event
        for event in await outbox(client, world.tenant.id, subject_id=world.tenant.id)
        if event["type"] == "authz.denied" and str(event["actor_id"]) == member.id
    ]
    assert denials
    assert denials[-1]["data"]["action"] == "project.create"


_MEMBERSHIP_ROLE = {"owner": ProjectRole.OWNER, "EDITOR": ProjectRole.EDITOR,
                    "VIEWER": ProjectRole.VIEWER, "none": None}  # fmt: skip
_TABLE_ACTION = {
    "get": ProjectAction.READ,
    "list-visible": ProjectAction.READ,
    "patch": ProjectAction.UPDATE,
    "delete": ProjectAction.DELETE,
    "list-members": ProjectAction.LIST_MEMBERS,
    "put-member": ProjectAction.MANAGE_MEMBERS,
    "delete-member": ProjectAction.MANAGE_MEMBERS,
    "create": ProjectAction.CREATE,
}


@pytest.mark.parametrize(
    ("role", "membership", "action"), list(itertools.product(ROLES, MEMBERSHIPS, ACTIONS))
)
def test_table_agrees_with_the_matrix(role: str, membership: str, action: str) -> None:
    allowed = project_may(Role(role), _MEMBERSHIP_ROLE[membership], _TABLE_ACTION[action])
    assert allowed is (expected(role, membership, action) < 400)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("membership", [*ProjectRole, None])
def test_task_writers_are_owner_editor_and_admin(role: str, membership: ProjectRole | None) -> None:
    allowed = project_may(Role(role), membership, ProjectAction.WRITE_TASKS)
    assert allowed is (role == "ADMIN" or membership in {ProjectRole.OWNER, ProjectRole.EDITOR})


def test_every_action_has_an_entry() -> None:
    assert set(PROJECT_PERMISSIONS) == set(ProjectAction)
