"""Tampered cursors on both task lists: every malformed key, id or sort is a 422 problem,
never a 500 (the decoder used to hand non-strings to ``UUID`` and timestamps that overflow
in asyncpg to the database)."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
import pytest

from tests.domains.tasks.helpers import World, create_task

ROUTES = ("project", "mine")
SORTS = ("createdAt", "-createdAt", "updatedAt", "dueDate", "-priority")
TASK_ID = "0b5e8a4c-2f4e-4b8e-9a51-6f0c1d2e3f40"

BAD_IDS: list[Any] = [5, 1.5, {}, [], None, True, "not-a-uuid", ""]
BAD_TIMESTAMPS: list[Any] = [
    {}, [], 5, None, True, "", "yesterday",
    "2030-01-01T00:00:00",  # naive: which instant is that?
    "2030-01-01",  # a date is a naive midnight
    "9999-12-31T23:00:00-14:00",  # past year 9999 in UTC
    "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
    "10000-01-01T00:00:00+00:00",
]
BAD_DATES: list[Any] = [
    {}, [], 5, None, True, "", "2030-13-01", "10000-01-01", "2030-01-01T00:00:00+00:00",
]
BAD_PRIORITIES: list[Any] = ["1", True, False, 1.5, -1, 4, 32768, 10**18, None, [], {}]
GOOD_KEYS: dict[str, list[Any]] = {
    "createdAt": ["2030-01-01T05:00:00+05:00", "2030-01-01T00:00:00Z"],
    "-createdAt": ["2030-01-01T05:00:00+05:00", "0001-01-01T00:00:00+00:00"],
    "updatedAt": ["9999-12-31T23:59:59+00:00"],
    "dueDate": ["2030-01-01", "9999-12-31"],  # 9999-12-31 is "no due date" (infinity)
    "-priority": [0, 3],
}


def _raw_cursor(values: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).rstrip(b"=").decode("ascii")


def _bad_keys(sort: str) -> list[Any]:
    if sort == "dueDate":
        return BAD_DATES
    if sort == "-priority":
        return BAD_PRIORITIES
    return BAD_TIMESTAMPS


def _good_key(sort: str) -> Any:
    return GOOD_KEYS[sort][0]


def _cursors(sort: str) -> list[Any]:
    """Every way the three values can be wrong, one at a time."""
    cursors: list[Any] = [[sort, key, TASK_ID] for key in _bad_keys(sort)]
    cursors += [[sort, _good_key(sort), raw_id] for raw_id in BAD_IDS]
    cursors += [[name, _good_key(sort), TASK_ID] for name in (5, None, {}, "title")]
    cursors += [[sort, _good_key(sort)], [sort, _good_key(sort), TASK_ID, 1], {"sort": sort}]
    return cursors


async def _get(client: httpx.AsyncClient, world: World, route: str,
               params: dict[str, Any]) -> httpx.Response:
    if route == "project":
        return await client.get(f"/v1/projects/{world.project_id}/tasks",
                                headers=world.viewer.headers, params=params)
    return await client.get("/v1/users/me/tasks", headers=world.assignee.headers, params=params)


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("route", ROUTES)
async def test_tampered_cursors_are_422(
    client: httpx.AsyncClient, world: World, route: str, sort: str
) -> None:
    await create_task(client, world.owner, world.project_id, assigneeId=world.assignee.id)
    for values in _cursors(sort):
        response = await _get(client, world, route,
                              {"sort": sort, "cursor": _raw_cursor(values)})
        assert response.status_code == 422, (values, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["field"] == "cursor", values


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("route", ROUTES)
async def test_well_formed_cursors_are_accepted(
    client: httpx.AsyncClient, world: World, route: str, sort: str
) -> None:
    """The strictness refuses nothing ``_page`` writes, nor an equivalent offset."""
    for key in GOOD_KEYS[sort]:
        response = await _get(client, world, route,
                              {"sort": sort, "cursor": _raw_cursor([sort, key, TASK_ID])})
        assert response.status_code == 200, (key, response.text)
