"""Helpers for the projects tests: create projects and members through the API, and read
the outbox (as the app role, scoped to the tenant, the way a consumer would)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Actor, unique
from tests.support.db import outbox as outbox  # shared with the other domains' tests


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
