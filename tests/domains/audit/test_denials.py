"""Every 403 leaves exactly one ``authz.denied`` in the audit trail: services refuse only
through the one shared helper, ``infra.security.authz.deny``."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx
import pytest

from tests.conftest import TenantHandle
from tests.domains.audit.test_identity_events import trail

DOMAINS = Path(__file__).resolve().parents[3] / "src" / "pantherahive" / "domains"


@pytest.mark.parametrize(
    ("method", "path", "body", "resource_type", "action"),
    [
        ("POST", "/v1/webhooks", {"url": "https://example.com/h", "events": ["*"]},
         "webhook", "webhook.manage"),
        ("GET", "/v1/webhooks", None, "webhook", "webhook.manage"),
        ("GET", "/v1/notifications/deliveries", None, "delivery",
         "notification.list_deliveries"),
    ],
)
async def test_a_members_refused_notifications_call_is_audited_once(
    client: httpx.AsyncClient, tenant: TenantHandle, method: str, path: str,
    body: dict[str, object] | None, resource_type: str, action: str,
) -> None:
    member = tenant.users["MEMBER"]
    request_id = f"req-denied-{resource_type}-{method.lower()}"
    response = await client.request(
        method, path, json=body, headers={**member.headers, "X-Request-ID": request_id}
    )
    assert response.status_code == 403, response.text
    denied = [
        e for e in await trail(client, tenant, action="authz.denied")
        if e["requestId"] == request_id
    ]
    assert len(denied) == 1
    assert denied[0]["actorId"] == member.id
    assert denied[0]["resourceType"] == resource_type
    assert denied[0]["data"] == {"action": action, "role": "MEMBER"}


def test_services_refuse_only_through_the_shared_helper() -> None:
    """``raise Forbidden(...)`` in a service would skip the audit event; only error
    subclasses (errors.py) may name it."""
    offenders = []
    for source in DOMAINS.rglob("*.py"):
        if source.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "Forbidden"):
                offenders.append(f"{source.relative_to(DOMAINS)}:{node.lineno}")
    assert offenders == [], offenders
