"""GET /v1/audit-events and friends: ADMIN only, filters, keyset pages, NDJSON export,
verification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import httpx
import orjson
import pytest

from pantherahive.domains.audit.chain import GENESIS_HASH, compute_hash
from tests.conftest import TenantHandle, create_tenant
from tests.domains.audit.helpers import app_db, make_event, record

ROUTES = ["/v1/audit-events", "/v1/audit-events/export", "/v1/audit-events/verify",
          f"/v1/audit-events/{uuid4()}"]
BASE = datetime(2021, 3, 1, 9, 30, tzinfo=UTC)


async def seed_widgets(client: httpx.AsyncClient, tenant: TenantHandle) -> list[UUID]:
    """Seven events on 'widget' resources, one a day from BASE; returns their ids."""
    tenant_id = UUID(tenant.id)
    admin, member = UUID(tenant.users["ADMIN"].id), UUID(tenant.users["MEMBER"].id)
    specs = [
        ("widget.created", admin, "w1", {"name": "Alpha", "colour": "red"}),
        ("widget.updated", admin, "w1", {"changes": {"name": ["Alpha", "Quarterly budget"]}}),
        ("widget.updated", member, "w2", {"changes": {"colour": ["red", "blue"]}}),
        ("widget.deleted", member, "w2", {}),
        ("widget.updated", admin, "w3", {"changes": {"size": [1, 2]}}),
        ("widget.updated", member, "w1", {"changes": {"name": ["Quarterly budget", "Gamma"]}}),
        ("widget.archived", None, "w3", {"reason": "retention"}),
    ]
    events = [
        make_event(tenant_id, action, actor_id=actor, subject_type="widget", subject_id=rid,
                   data=data, occurred_at=BASE + timedelta(days=i))
        for i, (action, actor, rid, data) in enumerate(specs)
    ]
    await record(app_db(client), *events)
    return [event.id for event in events]


async def widgets(client: httpx.AsyncClient, tenant: TenantHandle, **params: str) -> list[dict]:
    response = await client.get(
        "/v1/audit-events", headers=tenant.admin.headers,
        params={"resourceType": "widget", **params},
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]


@pytest.mark.parametrize("path", ROUTES)
async def test_every_route_needs_a_token(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_non_admins_are_forbidden(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    for role in ("MANAGER", "MEMBER"):
        for path in ROUTES:
            response = await client.get(path, headers=tenant.users[role].headers)
            assert response.status_code == 403, (role, path, response.text)
            assert response.json()["status"] == 403


async def test_another_tenants_event_is_404(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    ids = await seed_widgets(client, tenant)
    own = await client.get(f"/v1/audit-events/{ids[0]}", headers=tenant.admin.headers)
    assert own.status_code == 200
    assert own.json()["resourceId"] == "w1"
    stranger = await create_tenant(client)
    foreign = await client.get(f"/v1/audit-events/{ids[0]}", headers=stranger.admin.headers)
    assert foreign.status_code == 404
    assert "w1" not in foreign.text
    malformed = await client.get("/v1/audit-events/not-a-uuid", headers=tenant.admin.headers)
    assert malformed.status_code == 404
    listed = await client.get(
        "/v1/audit-events", headers=stranger.admin.headers, params={"resourceType": "widget"}
    )
    assert listed.json()["items"] == []


async def test_one_event_has_the_contract_shape(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    ids = await seed_widgets(client, tenant)
    body = (await client.get(f"/v1/audit-events/{ids[1]}", headers=tenant.admin.headers)).json()
    assert set(body) >= {"id", "seq", "occurredAt", "actorId", "actorType", "action",
                         "resourceType", "resourceId", "tenantId", "requestId", "ip",
                         "changes", "hash", "prevHash"}
    assert body["action"] == "widget.updated"
    assert body["actorType"] == "user"
    assert body["actorId"] == tenant.admin.id
    assert body["tenantId"] == tenant.id
    assert body["requestId"] == "req-test"
    assert body["changes"] == {"name": ["Alpha", "Quarterly budget"]}
    assert body["occurredAt"] == "2021-03-02T09:30:00.000000Z"
    assert body["hash"] == compute_hash(body["prevHash"], body)


async def test_filters_combine(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    await seed_widgets(client, tenant)
    member = tenant.users["MEMBER"].id
    assert [e["resourceId"] for e in await widgets(client, tenant, actorId=member)] == [
        "w1", "w2", "w2"]
    assert [e["resourceId"] for e in await widgets(client, tenant, action="widget.updated")] == [
        "w1", "w3", "w2", "w1"]
    by_resource = await widgets(client, tenant, resourceId="w3")
    assert [e["action"] for e in by_resource] == ["widget.archived", "widget.updated"]
    assert by_resource[0]["actorType"] == "system"
    window = await widgets(client, tenant, **{"from": "2021-03-02T09:30:00Z",
                                             "to": "2021-03-04T09:30:00Z"})
    assert [e["occurredAt"][:10] for e in window] == ["2021-03-04", "2021-03-03", "2021-03-02"]
    both = await widgets(client, tenant, actorId=member, action="widget.deleted")
    assert [e["resourceId"] for e in both] == ["w2"]
    bad = await client.get("/v1/audit-events", headers=tenant.admin.headers,
                           params={"actorId": "nope"})
    assert bad.status_code == 422


async def test_full_text_search(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    await seed_widgets(client, tenant)
    budget = await widgets(client, tenant, q="budget")
    assert [e["changes"]["name"][1] for e in budget] == ["Gamma", "Quarterly budget"]
    assert [e["action"] for e in await widgets(client, tenant, q="archived")] == [
        "widget.archived"]
    assert [e["resourceId"] for e in await widgets(client, tenant, q="blue -red")] == []
    assert [e["resourceId"] for e in await widgets(client, tenant, q='"quarterly budget"')] == [
        "w1", "w1"]
    assert await widgets(client, tenant, q="retention") != []
    combined = await widgets(client, tenant, q="budget", action="widget.updated",
                             actorId=tenant.users["MEMBER"].id)
    assert [e["changes"]["name"] for e in combined] == [["Quarterly budget", "Gamma"]]
    first = await client.get("/v1/audit-events", headers=tenant.admin.headers,
                             params={"q": "budget", "limit": "1"})
    second = await client.get("/v1/audit-events", headers=tenant.admin.headers,
                              params={"q": "budget", "limit": "1",
                                      "cursor": first.json()["nextCursor"]})
    assert [e["resourceId"] for e in first.json()["items"] + second.json()["items"]] == [
        "w1", "w1"]
    assert first.json()["items"][0]["seq"] > second.json()["items"][0]["seq"]
    assert second.json()["nextCursor"] is None
    # The search door keeps to the caller's tenant.
    stranger = await create_tenant(client)
    foreign = await client.get("/v1/audit-events", headers=stranger.admin.headers,
                               params={"q": "budget"})
    assert foreign.status_code == 200
    assert foreign.json()["items"] == []


async def test_keyset_pages_are_newest_first_and_complete(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await seed_widgets(client, tenant)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params = {"resourceType": "widget", "limit": "3"}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/v1/audit-events", headers=tenant.admin.headers,
                                    params=params)
        body = response.json()
        seen += [item["seq"] for item in body["items"]]
        pages += 1
        if pages == 1:
            # Events recorded while paging land above the cursor and are not repeated.
            await record(app_db(client), make_event(UUID(tenant.id), "widget.created",
                                                    subject_type="widget"))
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == 7
    assert seen == sorted(seen, reverse=True)
    for params in ({"limit": "0"}, {"limit": "201"}, {"cursor": "%%%"}, {"cursor": "WyJ4Il0"}):
        bad = await client.get("/v1/audit-events", headers=tenant.admin.headers, params=params)
        assert bad.status_code == 422, params


async def test_export_streams_ndjson_that_re_verifies(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await seed_widgets(client, tenant)
    filtered = await client.get("/v1/audit-events/export", headers=tenant.admin.headers,
                                params={"resourceType": "widget", "resourceId": "w1"})
    assert filtered.status_code == 200
    assert filtered.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in filtered.content.splitlines()]
    assert [(e["action"], e["resourceId"]) for e in lines] == [
        ("widget.created", "w1"), ("widget.updated", "w1"), ("widget.updated", "w1")]
    one = await client.get(f"/v1/audit-events/{lines[1]['id']}", headers=tenant.admin.headers)
    assert one.json() == lines[1]

    everything = await client.get("/v1/audit-events/export", headers=tenant.admin.headers)
    documents = [orjson.loads(line) for line in everything.content.splitlines()]
    assert [d["seq"] for d in documents] == list(range(1, len(documents) + 1))
    prev = GENESIS_HASH
    for document in documents:
        assert document["prevHash"] == prev
        assert document["hash"] == compute_hash(prev, document)
        prev = document["hash"]


async def test_verify_endpoint_reports_an_intact_chain(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await seed_widgets(client, tenant)
    response = await client.get("/v1/audit-events/verify", headers=tenant.admin.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["firstBrokenSeq"] is None
    assert body["checked"] >= 7
