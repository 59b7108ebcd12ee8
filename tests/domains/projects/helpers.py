"""Helpers for the projects tests: create projects and members through the API, and read
the outbox (as the app role, scoped to the tenant, the way a consumer would)."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text

from pantherahive.infra.db.engine import set_tenant
from tests.conftest import Actor, unique


async def create_project(client: httpx.AsyncClient, actor: Actor, **fields: Any) -> dict[str, Any]:
    body = {"name": fields.pop("name", unique("project")), **fields}
    response = await client.post("/v1/projects", headers=actor.headers, json=body)
    assert response.status_code == 201, response.text
    project: dict[str, Any] = response.json()
    return project


async def put_member(
    client: httpx.AsyncClient, actor: Actor, project_id: str, user_id: str, role: str
) -> None:
    response = await client.put(
        f"/v1/projects/{project_id}/members/{user_id}",
        headers=actor.headers,
        json={"role": role},
    )
    assert response.status_code == 200, response.text


async def outbox(
    client: httpx.AsyncClient, tenant_id: str, *, subject_id: str | None = None
) -> list[dict[str, Any]]:
    """The tenant's events, oldest first (optionally only those about one subject)."""
    db = client.app.state.platform.db  # type: ignore[attr-defined]
    sql = "SELECT type, subject_type, subject_id, actor_id, data FROM bus.outbox"
    params: dict[str, Any] = {}
    if subject_id is not None:
        sql += " WHERE subject_id = :subject"
        params["subject"] = subject_id
    async with db.sessions() as session:
        await set_tenant(session, tenant_id)
        rows = (await session.execute(text(sql + " ORDER BY position"), params)).mappings()
        result = [dict(row) for row in rows]
        await session.rollback()
    return result
