from __future__ import annotations

import httpx

from tests.conftest import TenantHandle


async def test_me_returns_the_caller(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    member = tenant.users["MEMBER"]
    response = await client.get("/v1/users/me", headers=member.headers)
    assert response.status_code == 200
    assert response.json()["username"] == member.username
    assert response.json()["role"] == "MEMBER"
