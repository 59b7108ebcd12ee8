"""Gateway duties: problem+json for every failure, request ids, limits, headers, metrics."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

from pantherahive.main import create_app
from tests.conftest import PASSWORD, TenantHandle, make_settings, running_app, unique
from tests.support.db import database_url


async def test_unknown_route_and_wrong_method_are_problems(client: httpx.AsyncClient) -> None:
    unknown = await client.get("/v1/nothing-here")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json()["instance"] == "/v1/nothing-here"
    wrong = await client.put("/v1/tenants", json={})
    assert wrong.status_code == 405
    assert wrong.json()["title"] == "Method Not Allowed"


async def test_validation_errors_name_the_fields(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/tenants", json={"name": "x", "slug": "UPPER", "admin": {}})
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"slug", "admin.username", "admin.password"} <= fields
    malformed = await client.post(
        "/v1/tenants", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 422


async def test_non_json_body_is_415_and_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    text = await client.post(
        "/v1/auth/login", content=b"tenant=a", headers={"Content-Type": "text/plain"}
    )
    assert text.status_code == 415
    big = await client.post(
        "/v1/auth/login",
        content=b"{" + b" " * (1024 * 1024 + 10) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert big.status_code == 413
    assert big.headers["content-type"] == "application/problem+json"


async def test_streamed_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b" " * (64 * 1024)

    response = await client.post(
        "/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] not in ("", "bad id with spaces")
    assert generated.headers["x-content-type-options"] == "nosniff"
    assert generated.headers["x-frame-options"] == "DENY"


async def test_health_readiness_and_metrics_by_route_template(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    await client.get(f"/v1/users/{tenant.admin.id}", headers=tenant.admin.headers)
    metrics = (await client.get("/metrics")).text
    assert 'route="/v1/users/{userId}"' in metrics
    assert tenant.admin.id not in metrics
    assert "http_request_duration_seconds_bucket" in metrics


async def test_unexpected_error_is_a_bare_500_and_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(tmp_path), database_url=database_url())

    async def explode() -> None:
        raise RuntimeError("SELECT secret FROM vault -- password=hunter2")

    app.add_api_route("/boom", explode)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            with caplog.at_level(logging.ERROR):
                response = await client.get("/boom", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "hunter2" not in response.text
    assert "SELECT" not in response.text
    assert response.json()["status"] == 500
    # Every line logged at ERROR about this request, whatever its event name: one.
    lines = [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.ERROR and "req-500" in record.getMessage()
    ]
    assert len(lines) == 1, lines
    assert "RuntimeError" in lines[0]
    assert "Traceback" in lines[0]


async def test_cors_preflight_allows_configured_origins_only(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, cors_origins=["https://app.example"])
    async with running_app(database_url(), settings) as client:
        ok = await client.options(
            "/v1/auth/login",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        evil = await client.options(
            "/v1/auth/login",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in evil.headers


async def test_signup_can_be_closed(tmp_path: Path) -> None:
    async with running_app(database_url(), make_settings(tmp_path, signup_open=False)) as client:
        slug = unique("closed")
        response = await client.post(
            "/v1/tenants",
            json={"name": slug, "slug": slug, "admin": {"username": "root", "password": PASSWORD}},
        )
        assert response.status_code == 403
        assert response.json()["type"].endswith("/signup-closed")


async def test_tenant_slug_is_unique_and_admin_role_must_be_admin(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    again = await client.post(
        "/v1/tenants",
        json={"name": "x", "slug": tenant.slug, "admin": {"username": "adm", "password": PASSWORD}},
    )
    assert again.status_code == 409
    slug = unique("role")
    member_admin = await client.post(
        "/v1/tenants",
        json={
            "name": slug,
            "slug": slug,
            "admin": {"username": "adm", "password": PASSWORD, "role": "MEMBER"},
        },
    )
    assert member_admin.status_code == 422


async def test_ordinary_requests_log_nothing_at_error_level(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        await asyncio.gather(*(client.get("/healthz") for _ in range(5)))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"{not json", "character 1"), (b'{"name": "x",}', "character 13"), (b"[1,", "character 3")],
)
async def test_malformed_json_is_a_body_error_a_person_can_read(
    client: httpx.AsyncClient, raw: bytes, reason: str
) -> None:
    response = await client.post(
        "/v1/tenants", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["field"] == "body"
    assert error["message"].startswith("The body is not valid JSON")
    assert reason in error["message"]


async def test_a_malformed_path_id_is_404_even_with_a_bad_body(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    for body in ({"role": "BOSS"}, {"unknownField": 1}, None):
        response = await client.patch(
            "/v1/users/not-a-uuid", headers=tenant.admin.headers, json=body
        )
        assert response.status_code == 404, (body, response.text)
        assert "user_id" not in response.text


async def test_openapi_documents_what_every_route_gets(client: httpx.AsyncClient) -> None:
    """Idempotency-Key on every POST; 413/415 wherever a body goes; 503 everywhere."""
    schema = (await client.get("/openapi.json")).json()
    problem = {"$ref": "#/components/schemas/Problem"}
    posts = 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert responses["503"]["content"]["application/problem+json"]["schema"] == problem
            if method in ("post", "put", "patch"):
                for code in ("413", "415"):
                    content = responses[code]["content"]["application/problem+json"]
                    assert content["schema"] == problem, (method, path, code)
            if method == "post":
                posts += 1
                names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "header"]
                assert names.count("Idempotency-Key") == 1, (path, names)
    assert posts >= 15
    login = schema["paths"]["/v1/auth/login"]["post"]
    (key,) = [p for p in login["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["schema"]["maxLength"] == 255
    assert "Idempotent-Replayed" in login["responses"]["200"]["headers"]
