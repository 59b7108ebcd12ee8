"""Acceptance: scope limits hold for every endpoint. The test walks the OpenAPI document:
each authenticated operation declares the scope it needs (or that no personal access token
may call it), a token without that scope gets 403 naming it, and a token with it is not
refused for its scope."""

from __future__ import annotations

import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from pantherahive.infra.security.scopes import BEARER_SCHEME, Scope
from pantherahive.main import create_app
from tests.conftest import TenantHandle, create_tenant, make_settings, unique


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    app = create_app(make_settings(Path(tempfile.mkdtemp(prefix="scopes-"))))
    return sorted(
        (method.upper(), path, operation)
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "security" in operation
    )


OPERATIONS = _operations()
IDS = [f"{method} {path}" for method, path, _ in OPERATIONS]
NARROW_SCOPES = [scope for scope in Scope if scope is not Scope.ADMIN]


def test_the_walk_sees_the_operations() -> None:
    assert ("GET", "/v1/projects") in {(m, p) for m, p, _ in OPERATIONS}
    assert len(OPERATIONS) > 40


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
def test_each_operation_declares_its_scope(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    assert "x-required-scope" in operation, f"{method} {path} declares no scope"
    scope = operation["x-required-scope"]
    assert scope is None or scope in set(Scope)
    assert operation["security"] == [{BEARER_SCHEME: [scope] if scope else []}]
    assert "403" in operation["responses"]


def _url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)


async def _pat(client: httpx.AsyncClient, tenant: TenantHandle, scopes: list[str]) -> str:
    response = await client.post(
        "/v1/users/me/tokens", headers=tenant.admin.headers,
        json={"name": unique("walk"), "scopes": scopes},
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def _call(client: httpx.AsyncClient, method: str, path: str, token: str) -> httpx.Response:
    return await client.request(
        method, _url(path), headers={"Authorization": f"Bearer {token}"},
        json=None if method in ("GET", "DELETE") else {},
    )


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
async def test_a_token_without_the_scope_is_refused_naming_it(
    client: httpx.AsyncClient, method: str, path: str, operation: dict[str, Any]
) -> None:
    tenant = await create_tenant(client)
    required = operation["x-required-scope"]
    if required is None:
        token = await _pat(client, tenant, ["admin"])
        response = await _call(client, method, path, token)
        assert response.status_code == 403, response.text
        assert "cannot be used here" in response.json()["detail"]
        return
    others = [scope.value for scope in NARROW_SCOPES if scope != required]
    response = await _call(client, method, path, await _pat(client, tenant, others))
    assert response.status_code == 403, response.text
    assert required in response.json()["detail"]

    allowed = await _call(client, method, path, await _pat(client, tenant, [required]))
    assert not (allowed.status_code == 403 and "lacks the scope" in allowed.text), allowed.text
