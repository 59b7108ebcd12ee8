from __future__ import annotations

import httpx
import pytest

from tests.domains.tasks.helpers import World, build_world


@pytest.fixture(scope="module")
async def world(client: httpx.AsyncClient) -> World:
    """One tenant and project per test module; tests make their own tasks in it."""
    return await build_world(client)
