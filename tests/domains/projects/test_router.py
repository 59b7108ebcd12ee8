"""Projects over HTTP: the resource, validation, ETag/If-Match, members, filters, tenancy
and the events each change writes."""

from __future__ import annotations

import uuid

import httpx
import pytest

from pantherahive.domains.projects.handlers import CONSUMERS as PROJECT_CONSUMERS
from pantherahive.domains.tasks.handlers import CONSUMERS as TASK_CONSUMERS
from pantherahive.infra.bus.embedded import drain
from tests.conftest import TenantHandle, add_user, create_tenant
from tests.domains.projects.helpers import create_project, outbox, put_member

PROJECT_FIELDS = {"id", "name", "description", "ownerId", "status", "startDate", "endDate",
                  "version", "createdAt", "updatedAt"}  # fmt: skip


async def test_create_returns_the_full_project_with_etag_and_location(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    manager = tenant.users["MANAGER"]
    response = await client.post(
        "/v1/projects",
        headers=manager.headers,
        json={"name": "Apollo", "startDate": "2026-01-01", "endDate": "2026-01-01"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == PROJECT_FIELDS
    assert body["ownerId"] == manager.id  # defaults to the caller
    assert body["status"] == "ACTIVE"
    assert body["description"] is None  # optional fields are present, null when empty
    assert body["version"] == 1
    assert body["createdAt"].endswith("Z")
    assert response.headers["etag"] == '"1"'
    assert response.headers["location"] == f"/v1/projects/{body['id']}"

    members = await client.get(f"/v1/projects/{body['id']}/members", headers=manager.headers)
    assert members.status_code == 200
    assert members.json()["nextCursor"] is None
    [owner] = members.json()["items"]
    assert owner["userId"] == manager.id
    assert owner["role"] == "OWNER"
    assert set(owner) == {"userId", "role", "addedAt"}


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "startDate": "2026-02-02", "endDate": "2026-02-01"},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 201},
        {"name": "x", "status": "DONE"},
        {"name": "x", "unknown": 1},
        {"name": "x", "startDate": "not-a-date"},
        {"description": "no name"},
    ],
)
async def test_invalid_creations_are_422(
    client: httpx.AsyncClient, tenant: TenantHandle, body: dict[str, object]
) -> None:
    response = await client.post("/v1/projects", headers=tenant.admin.headers, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"]


async def test_end_before_start_names_end_date(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    response = await client.post(
        "/v1/projects",
        headers=tenant.admin.headers,
        json={"name": "x", "startDate": "2026-02-02", "endDate": "2026-02-01"},
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "endDate", "message": "must be on or after startDate"}
    ]
    project = await create_project(client, tenant.admin, startDate="2026-03-01")
    patch = await client.patch(
        f"/v1/projects/{project['id']}",
        headers=tenant.admin.headers,
        json={"endDate": "2026-02-28"},
    )
    assert patch.status_code == 422
    assert patch.json()["errors"][0]["field"] == "endDate"
    moved_start = await client.patch(
        f"/v1/projects/{project['id']}",
        headers=tenant.admin.headers,
        json={"startDate": "2026-01-01", "endDate": "2026-02-28"},
    )
    assert moved_start.status_code == 200
    assert moved_start.json()["endDate"] == "2026-02-28"


async def test_dates_must_be_real_days(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    """date.min/date.max are stored as -infinity/infinity by asyncpg: refused, with the
    allowed range in the message."""
    admin = tenant.admin
    for field in ("startDate", "endDate"):
        for day in ("9999-12-31", "0001-01-01"):
            response = await client.post(
                "/v1/projects", headers=admin.headers, json={"name": "x", field: day}
            )
            assert response.status_code == 422, (field, day)
            error = response.json()["errors"][0]
            assert error["field"] == field
            assert "0001-01-02" in error["message"]
            assert "9999-12-30" in error["message"]
    project = await create_project(client, admin, startDate="0001-01-02", endDate="9999-12-30")
    assert (project["startDate"], project["endDate"]) == ("0001-01-02", "9999-12-30")
    patch = await client.patch(
        f"/v1/projects/{project['id']}", headers=admin.headers, json={"endDate": "9999-12-31"}
    )
    assert patch.status_code == 422
    assert patch.json()["errors"][0]["field"] == "endDate"


async def test_owner_must_be_an_active_user_of_the_tenant(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    admin = tenant.admin
    other = await create_tenant(client)
    leaver = await add_user(client, tenant, "MEMBER")
    assert (await client.delete(f"/v1/users/{leaver.id}", headers=admin.headers)).status_code == 204

    for owner_id in (other.admin.id, leaver.id, str(uuid.uuid4())):
        response = await client.post(
            "/v1/projects", headers=admin.headers, json={"name": "x", "ownerId": owner_id}
        )
        assert response.status_code == 422, owner_id
        assert response.json()["errors"][0]["field"] == "ownerId"

    project = await create_project(client, admin)
    for owner_id in (other.admin.id, leaver.id):
        patch = await client.patch(
            f"/v1/projects/{project['id']}", headers=admin.headers, json={"ownerId": owner_id}
        )
        assert patch.status_code == 422
    member = tenant.users["MEMBER"]
    response = await client.post(
        "/v1/projects", headers=admin.headers, json={"name": "x", "ownerId": member.id}
    )
    assert response.status_code == 201
    assert response.json()["ownerId"] == member.id


async def test_if_match(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    admin = tenant.admin
    project = await create_project(client, admin)
    url = f"/v1/projects/{project['id']}"

    stale = await client.patch(
        url, headers=admin.headers | {"If-Match": '"7"'}, json={"name": "stale"}
    )
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"

    first = await client.patch(
        url, headers=admin.headers | {"If-Match": '"1"'}, json={"name": "first"}
    )
    assert first.status_code == 200
    assert first.headers["etag"] == '"2"'
    assert first.json()["version"] == 2

    lost_update = await client.patch(
        url, headers=admin.headers | {"If-Match": '"1"'}, json={"name": "lost"}
    )
    assert lost_update.status_code == 412

    assert lost_update.headers["etag"] == '"2"'

    # RFC 9110: If-Match compares strongly, so a weak tag never matches.
    weak = await client.patch(
        url, headers=admin.headers | {"If-Match": 'W/"2"'}, json={"status": "ON_HOLD"}
    )
    assert weak.status_code == 412
    assert weak.headers["etag"] == '"2"'

    listed = await client.patch(
        url, headers=admin.headers | {"If-Match": 'W/"9", "2"'}, json={"status": "ON_HOLD"}
    )
    assert listed.status_code == 200
    assert listed.headers["etag"] == '"3"'

    too_long = await client.patch(
        url, headers=admin.headers | {"If-Match": ", ".join(['"3"'] * 200)}, json={"name": "x"}
    )
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "If-Match"

    blind = await client.patch(url, headers=admin.headers, json={"name": "last write wins"})
    assert blind.status_code == 200
    assert blind.json()["version"] == 4

    read = await client.get(url, headers=admin.headers)
    assert read.headers["etag"] == '"4"'
    assert read.json()["name"] == "last write wins"
    assert read.json()["status"] == "ON_HOLD"

    unchanged = await client.patch(url, headers=admin.headers, json={"name": "last write wins"})
    assert unchanged.json()["version"] == 4  # nothing changed, nothing to version

    stale_delete = await client.delete(url, headers=admin.headers | {"If-Match": '"1"'})
    assert stale_delete.status_code == 412
    assert (
        await client.delete(url, headers=admin.headers | {"If-Match": '"4"'})
    ).status_code == 204


async def test_concurrent_conditional_patches_let_exactly_one_win(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    import asyncio

    admin = tenant.admin
    project = await create_project(client, admin)
    url = f"/v1/projects/{project['id']}"
    responses = await asyncio.gather(
        *[
            client.patch(url, headers=admin.headers | {"If-Match": '"1"'}, json={"name": f"n{i}"})
            for i in range(8)
        ]
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * 7
    assert (await client.get(url, headers=admin.headers)).json()["version"] == 2


async def test_patch_rules(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    admin = tenant.admin
    project = await create_project(client, admin, description="d", startDate="2026-01-01")
    url = f"/v1/projects/{project['id']}"
    for field in ("name", "status", "ownerId"):
        response = await client.patch(url, headers=admin.headers, json={field: None})
        assert response.status_code == 422, field
        assert response.json()["errors"][0]["field"] == field
    assert (await client.patch(url, headers=admin.headers, json={"id": str(uuid.uuid4())})
            ).status_code == 422  # fmt: skip
    cleared = await client.patch(
        url, headers=admin.headers, json={"description": None, "startDate": None}
    )
    assert cleared.status_code == 200
    assert cleared.json()["description"] is None
    assert cleared.json()["startDate"] is None
    events = await outbox(client, tenant.id, subject_id=project["id"])
    assert events[-1]["type"] == "project.updated"
    assert events[-1]["data"] == {
        "changes": {"description": ["d", None], "startDate": ["2026-01-01", None]}
    }


async def test_owner_transfer_keeps_the_old_owner_as_editor(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    manager, member = tenant.users["MANAGER"], tenant.users["MEMBER"]
    project = await create_project(client, manager)
    url = f"/v1/projects/{project['id']}"
    response = await client.patch(url, headers=manager.headers, json={"ownerId": member.id})
    assert response.status_code == 200
    assert response.json()["ownerId"] == member.id
    members = await client.get(f"{url}/members", headers=member.headers)
    assert {m["userId"]: m["role"] for m in members.json()["items"]} == {
        manager.id: "EDITOR", member.id: "OWNER"}  # fmt: skip
    # the former owner lost the owner's rights
    denied = await client.patch(url, headers=manager.headers, json={"name": "mine"})
    assert denied.status_code == 403
    types = [e["type"] for e in await outbox(client, tenant.id, subject_id=project["id"])]
    assert types[-4:-1] == ["project.member_updated", "project.member_added", "project.updated"]


async def test_owner_transfer_drops_an_inactive_old_owner(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    """A deactivated owner keeps the project until an ADMIN transfers it; the transfer must
    not re-admit them as EDITOR (PUT /members/{them} is 404), and emits the removal, so
    tasks unassigns them."""
    admin, member = tenant.admin, tenant.users["MEMBER"]
    leaver = await add_user(client, tenant, "MANAGER")
    project = await create_project(client, leaver)
    url = f"/v1/projects/{project['id']}"
    task = await client.post(f"{url}/tasks", headers=leaver.headers,
                             json={"title": "theirs", "assigneeId": leaver.id})
    assert task.status_code == 201
    assert (await client.delete(f"/v1/users/{leaver.id}", headers=admin.headers)).status_code == 204
    db = client.app.state.platform.db  # type: ignore[attr-defined]
    await drain(db, PROJECT_CONSUMERS)  # user.deactivated: owners keep their projects

    response = await client.patch(url, headers=admin.headers, json={"ownerId": member.id})
    assert response.status_code == 200, response.text
    members = await client.get(f"{url}/members", headers=admin.headers)
    assert {m["userId"]: m["role"] for m in members.json()["items"]} == {member.id: "OWNER"}
    readd = await client.put(f"{url}/members/{leaver.id}", headers=admin.headers,
                             json={"role": "EDITOR"})
    assert readd.status_code == 404
    removals = [e for e in await outbox(client, tenant.id, subject_id=project["id"])
                if e["type"] == "project.member_removed"]  # fmt: skip
    assert [e["data"] for e in removals] == [
        {"userId": leaver.id, "role": "OWNER", "reason": "user.deactivated"}]  # fmt: skip

    await drain(db, TASK_CONSUMERS)
    after = await client.get(f"/v1/tasks/{task.json()['id']}", headers=admin.headers)
    assert after.json()["assigneeId"] is None


async def test_member_changes(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    manager, member = tenant.users["MANAGER"], tenant.users["MEMBER"]
    project = await create_project(client, manager)
    base = f"/v1/projects/{project['id']}/members"

    added = await client.put(
        f"{base}/{member.id}", headers=manager.headers, json={"role": "VIEWER"}
    )
    assert added.status_code == 200
    assert added.json()["role"] == "VIEWER"
    assert added.json()["userId"] == member.id
    again = await client.put(
        f"{base}/{member.id}", headers=manager.headers, json={"role": "VIEWER"}
    )
    assert again.status_code == 200
    assert again.json()["addedAt"] == added.json()["addedAt"]
    changed = await client.put(
        f"{base}/{member.id}", headers=manager.headers, json={"role": "EDITOR"}
    )
    assert changed.json()["role"] == "EDITOR"

    for bad_role in ("OWNER", "ADMIN", None):
        response = await client.put(
            f"{base}/{member.id}", headers=manager.headers, json={"role": bad_role}
        )
        assert response.status_code == 422
    owner_change = await client.put(
        f"{base}/{manager.id}", headers=manager.headers, json={"role": "VIEWER"}
    )
    assert owner_change.status_code == 409
    owner_removal = await client.delete(f"{base}/{manager.id}", headers=manager.headers)
    assert owner_removal.status_code == 409

    removed = await client.delete(f"{base}/{member.id}", headers=manager.headers)
    assert removed.status_code == 204
    gone = await client.delete(f"{base}/{member.id}", headers=manager.headers)
    assert gone.status_code == 404
    # the former member no longer sees the project at all
    assert (await client.get(f"/v1/projects/{project['id']}", headers=member.headers)
            ).status_code == 404  # fmt: skip

    events = [e for e in await outbox(client, tenant.id, subject_id=project["id"])
              if e["type"].startswith("project.member")]  # fmt: skip
    assert [(e["type"], e["data"]) for e in events] == [
        ("project.member_added",
         {"userId": member.id, "role": "VIEWER", "projectName": project["name"]}),
        ("project.member_updated",
         {"userId": member.id, "changes": {"role": ["VIEWER", "EDITOR"]}}),
        ("project.member_removed", {"userId": member.id, "role": "EDITOR"}),
    ]  # fmt: skip
    assert all(str(e["actor_id"]) == manager.id for e in events)


async def test_inactive_or_unknown_users_cannot_be_added(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    admin = tenant.admin
    leaver = await add_user(client, tenant, "MEMBER")
    await client.delete(f"/v1/users/{leaver.id}", headers=admin.headers)
    project = await create_project(client, admin)
    for user_id in (leaver.id, str(uuid.uuid4())):
        response = await client.put(
            f"/v1/projects/{project['id']}/members/{user_id}",
            headers=admin.headers,
            json={"role": "VIEWER"},
        )
        assert response.status_code == 404


async def test_members_pagination(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    admin = tenant.admin
    project = await create_project(client, admin)
    ids = {admin.id}
    for _ in range(4):
        user = await add_user(client, tenant, "MEMBER")
        await put_member(client, admin, project["id"], user.id, "VIEWER")
        ids.add(user.id)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = await client.get(
            f"/v1/projects/{project['id']}/members", headers=admin.headers, params=params
        )
        assert page.status_code == 200
        seen += [m["userId"] for m in page.json()["items"]]
        cursor = page.json()["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == len(ids)
    assert set(seen) == ids
    assert seen[0] == admin.id  # the owner joined first


async def test_delete_removes_project_and_members_and_emits(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    admin, member = tenant.admin, tenant.users["MEMBER"]
    project = await create_project(client, admin)
    await put_member(client, admin, project["id"], member.id, "EDITOR")
    url = f"/v1/projects/{project['id']}"
    assert (await client.delete(url, headers=admin.headers)).status_code == 204
    assert (await client.get(url, headers=admin.headers)).status_code == 404
    assert (await client.get(f"{url}/members", headers=admin.headers)).status_code == 404
    assert (await client.delete(url, headers=admin.headers)).status_code == 404
    listed = await client.get("/v1/projects", headers=member.headers)
    assert project["id"] not in {p["id"] for p in listed.json()["items"]}
    events = await outbox(client, tenant.id, subject_id=project["id"])
    assert [e["type"] for e in events] == [
        "project.created", "project.member_added", "project.deleted"]  # fmt: skip
    assert events[-1]["data"] == {
        "name": project["name"], "memberIds": sorted([admin.id, member.id])}  # fmt: skip


async def test_list_filters(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    admin, manager = tenant.admin, tenant.users["MANAGER"]
    alpha = await create_project(client, admin, name="Alpha_One")
    await create_project(client, admin, name="alphabet", status="ARCHIVED")
    beta = await create_project(client, manager, name="Beta")
    await create_project(client, admin, name="AlphaXOne")

    async def names(**params: str) -> list[str]:
        response = await client.get("/v1/projects", headers=admin.headers, params=params)
        assert response.status_code == 200, response.text
        return [p["name"] for p in response.json()["items"]]

    assert await names() == ["Alpha_One", "alphabet", "Beta", "AlphaXOne"]
    assert await names(q="ALPHA") == ["Alpha_One", "alphabet", "AlphaXOne"]
    assert await names(q="alpha_") == ["Alpha_One"]  # LIKE wildcards are literal
    assert await names(q="lpha") == []  # a prefix, not a substring
    assert await names(status="ARCHIVED") == ["alphabet"]
    assert await names(ownerId=manager.id) == ["Beta"]
    assert await names(ownerId=manager.id, q="alpha") == []
    assert await names(q="%") == []
    # a manager sees only their own
    mine = await client.get("/v1/projects", headers=manager.headers)
    assert [p["id"] for p in mine.json()["items"]] == [beta["id"]]
    assert alpha["id"] not in {p["id"] for p in mine.json()["items"]}


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "201"}, {"limit": "x"}, {"status": "DONE"},
     {"ownerId": "nope"}, {"cursor": "not-a-cursor"}, {"q": ""}],
)  # fmt: skip
async def test_invalid_list_parameters_are_422(
    client: httpx.AsyncClient, tenant: TenantHandle, params: dict[str, str]
) -> None:
    response = await client.get("/v1/projects", headers=tenant.admin.headers, params=params)
    assert response.status_code == 422, response.text


async def test_malformed_ids_in_paths_are_404(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    headers = tenant.admin.headers
    assert (await client.get("/v1/projects/not-a-uuid", headers=headers)).status_code == 404
    project = await create_project(client, tenant.admin)
    response = await client.put(
        f"/v1/projects/{project['id']}/members/xyz", headers=headers, json={"role": "VIEWER"}
    )
    assert response.status_code == 404


# ---- tenancy and authentication ---------------------------------------------------------
def _every_route(project_id: str, user_id: str) -> list[tuple[str, str, dict[str, object] | None]]:
    base = f"/v1/projects/{project_id}"
    return [
        ("GET", base, None),
        ("PATCH", base, {"name": "taken over"}),
        ("DELETE", base, None),
        ("GET", f"{base}/members", None),
        ("PUT", f"{base}/members/{user_id}", {"role": "EDITOR"}),
        ("DELETE", f"{base}/members/{user_id}", None),
    ]


async def test_another_tenants_ids_are_404_everywhere(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    victim = tenant
    project = await create_project(client, victim.admin)
    member = victim.users["MEMBER"]
    await put_member(client, victim.admin, project["id"], member.id, "VIEWER")
    attacker = await create_tenant(client)
    outsider = await add_user(client, attacker, "MANAGER")

    for method, url, body in _every_route(project["id"], member.id):
        response = await client.request(method, url, headers=attacker.admin.headers, json=body)
        assert response.status_code == 404, (method, url, response.text)
        assert project["name"] not in response.text
    listed = await client.get("/v1/projects", headers=attacker.admin.headers)
    assert listed.json()["items"] == []
    by_owner = await client.get(
        "/v1/projects", headers=attacker.admin.headers, params={"ownerId": victim.admin.id}
    )
    assert by_owner.json()["items"] == []

    # the victim's own project, but a user of the other tenant
    own = f"/v1/projects/{project['id']}/members/{outsider.id}"
    assert (await client.put(own, headers=victim.admin.headers, json={"role": "VIEWER"})
            ).status_code == 404  # fmt: skip
    assert (await client.delete(own, headers=victim.admin.headers)).status_code == 404

    # nothing changed
    after = await client.get(f"/v1/projects/{project['id']}", headers=victim.admin.headers)
    assert after.status_code == 200
    assert after.json()["version"] == 1
    assert not [e for e in await outbox(client, attacker.id) if e["type"].startswith("project")]


async def test_routes_need_a_token(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    project = await create_project(client, tenant.admin)
    routes = [("GET", "/v1/projects", None), ("POST", "/v1/projects", {"name": "x"}),
              *_every_route(project["id"], tenant.admin.id)]  # fmt: skip
    for method, url, body in routes:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            response = await client.request(method, url, headers=headers, json=body)
            assert response.status_code == 401, (method, url)
            assert response.headers["www-authenticate"].startswith("Bearer")
    still = await client.get(f"/v1/projects/{project['id']}", headers=tenant.admin.headers)
    assert still.json()["version"] == 1


async def test_a_deactivated_users_token_stops_working(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    manager = await add_user(client, tenant, "MANAGER")
    project = await create_project(client, manager)
    await client.delete(f"/v1/users/{manager.id}", headers=tenant.admin.headers)
    response = await client.get(f"/v1/projects/{project['id']}", headers=manager.headers)
    assert response.status_code == 401


async def test_openapi_documents_the_routes(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    assert set(paths["/v1/projects"]) >= {"get", "post"}
    assert set(paths["/v1/projects/{projectId}"]) >= {"get", "patch", "delete"}
    assert set(paths["/v1/projects/{projectId}/members/{userId}"]) >= {"put", "delete"}
    patch = paths["/v1/projects/{projectId}"]["patch"]
    assert "412" in patch["responses"]
    assert any(p["name"] == "If-Match" for p in patch["parameters"])
    project = schema["components"]["schemas"]["ProjectRead"]
    assert set(project["properties"]) == PROJECT_FIELDS
