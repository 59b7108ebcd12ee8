"""Contract details as a client sees them: the names in /openapi.json, the 405's Allow, the
400 being documented, refresh answering 401, offline /docs."""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import TenantHandle

# The rule: a path parameter carries the name API.md writes in that path, literally. Where
# API.md's table shows `{id}` (notifications, webhooks, audit events) it stays `{id}`;
# every other id is a descriptive camelCase name. So no name has an `_`, and every name is
# one of these.
CONTRACT_NAMES = {
    "taskId", "projectId", "userId", "dependsOnId", "deliveryId", "id", "tokenId", "tenant",
    "sessionId",
}
# Templates exactly as API.md's tables show them (each must be in /openapi.json verbatim).
API_MD_TEMPLATES = {
    "/v1/users/{userId}",
    "/v1/projects/{projectId}",
    "/v1/projects/{projectId}/members",
    "/v1/projects/{projectId}/members/{userId}",
    "/v1/projects/{projectId}/tasks",
    "/v1/tasks/{taskId}",
    "/v1/tasks/{taskId}/dependencies/{dependsOnId}",
    "/v1/notifications/{id}/read",
    "/v1/webhooks/{id}",
    "/v1/webhooks/{id}/deliveries",
    "/v1/webhooks/{id}/deliveries/{deliveryId}/redeliver",
    "/v1/webhooks/{id}/rotate-secret",
    "/v1/audit-events/{id}",
    "/v1/users/me/tokens/{tokenId}",
    "/v1/tokens/{tokenId}",
    "/v1/auth/oidc/{tenant}/start",
    "/v1/auth/oidc/{tenant}/callback",
}
_TEMPLATE = re.compile(r"{([^}]*)}")


async def _openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def test_path_parameters_carry_the_contracts_names(client: httpx.AsyncClient) -> None:
    paths = (await _openapi(client))["paths"]
    assert set(paths) >= API_MD_TEMPLATES, API_MD_TEMPLATES - set(paths)
    for template, item in paths.items():
        in_template = _TEMPLATE.findall(template)
        for name in in_template:
            assert "_" not in name, template
            assert ":" not in name, template
            assert name in CONTRACT_NAMES, (template, name)
        for method, operation in item.items():
            declared = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
            assert sorted(declared) == sorted(in_template), (method, template, declared)


async def test_a_malformed_id_in_a_path_is_still_404(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    for path in ("/v1/tasks/not-a-uuid", "/v1/users/123", "/v1/audit-events/x", "/v1/webhooks/1"):
        response = await client.get(path, headers=tenant.admin.headers)
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/tasks/{id}", "GET, PATCH, DELETE"),
        ("OPTIONS", "/v1/projects/{id}", "GET, PATCH, DELETE"),
        ("POST", "/v1/users/{id}", "GET, PATCH, DELETE"),
        ("PATCH", "/v1/users", "GET, POST"),
        ("PATCH", "/v1/users/me", "GET"),
        ("DELETE", "/v1/notifications/preferences", "GET, PUT"),
        ("GET", "/v1/tasks/{id}/dependencies/{id}", "PUT, DELETE"),
        ("POST", "/v1/projects/{id}/members/{id}", "PUT, DELETE"),
    ],
)
async def test_a_405_lists_every_method_of_the_path(
    client: httpx.AsyncClient, tenant: TenantHandle, method: str, path: str, allow: str
) -> None:
    url = path.replace("{id}", str(uuid.uuid4()))
    response = await client.request(method, url, headers=tenant.admin.headers)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allow
    assert response.headers["content-type"] == "application/problem+json"


async def test_every_operation_with_a_body_documents_400_and_422(
    client: httpx.AsyncClient,
) -> None:
    paths = (await _openapi(client))["paths"]
    with_body = [
        (method, path, op)
        for path, item in paths.items()
        for method, op in item.items()
        if "requestBody" in op
    ]
    assert len(with_body) >= 15
    for method, path, op in with_body:
        for code in ("400", "422"):
            assert code in op["responses"], (method, path, code)
            assert "application/problem+json" in op["responses"][code]["content"]


async def test_an_unparseable_body_is_the_documented_400(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    response = await client.put(
        "/v1/notifications/preferences",
        headers={**tenant.admin.headers, "Content-Type": "application/json"},
        content=b"\xff\xfe{not json",
    )
    assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    "token", ["garbage", "", "x" * 5000, "access"], ids=["garbage", "empty", "long", "access"]
)
async def test_refresh_with_anything_but_a_refresh_token_is_401(
    client: httpx.AsyncClient, tenant: TenantHandle, token: str
) -> None:
    value = tenant.admin.token if token == "access" else token
    for route in ("/v1/auth/refresh", "/v1/auth/logout"):
        response = await client.post(route, json={"refreshToken": value})
        assert response.status_code == 401, (route, response.text)


async def test_nulls_a_partial_update_refuses_are_declared_non_null(
    client: httpx.AsyncClient,
) -> None:
    schemas = (await _openapi(client))["components"]["schemas"]

    def nullable(model: str, field: str) -> bool:
        return '"null"' in str(schemas[model]["properties"][field]).replace("'", '"')

    for model, field in [
        ("UserUpdate", "role"), ("UserUpdate", "status"),
        ("ProjectUpdate", "name"), ("ProjectUpdate", "ownerId"), ("ProjectUpdate", "status"),
        ("TaskUpdate", "title"), ("TaskUpdate", "status"), ("TaskUpdate", "priority"),
        ("TaskUpdate", "labels"),
    ]:
        assert not nullable(model, field), (model, field)
    for model, field in [("UserUpdate", "email"), ("TaskUpdate", "assigneeId")]:
        assert nullable(model, field), (model, field)  # null clears these


@pytest.mark.parametrize("query", ["to=0.5", "from=17", "to=yesterday"])
async def test_audit_export_validates_its_filters_before_streaming(
    client: httpx.AsyncClient, tenant: TenantHandle, query: str
) -> None:
    response = await client.get(f"/v1/audit-events/export?{query}", headers=tenant.admin.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_due_date_filter_is_a_date_not_a_number(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    response = await client.get("/v1/users/me/tasks?dueBefore=0", headers=tenant.admin.headers)
    assert response.status_code == 422, response.text


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href"} and value:
                self.urls.append(value)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_work_offline(client: httpx.AsyncClient, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    html = response.text
    # no absolute URL anywhere in the page: scripts, styles, fonts, favicon all same-origin
    assert "http://" not in html, html
    assert "https://" not in html, html
    parser = _Assets()
    parser.feed(html)
    assert any(url.endswith(".js") for url in parser.urls), parser.urls
    for url in parser.urls:
        assert not urlsplit(url).netloc, url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0
    assert "/openapi.json" in html
