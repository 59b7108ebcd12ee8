from __future__ import annotations

import httpx
import pytest

from tests.domains.tasks.helpers import World, build_world


@pytest.fixture(scope="session")
async def world(client: httpx.AsyncClient) -> World:
    """One tenant and project for the tasks tests (users cost an argon2 hash each); tests
    make their own tasks in it, and their own projects where they need a clean slate."""
    return await build_world(client)
