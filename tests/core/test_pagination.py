"""Cursors are client input: whatever a crafted one holds, the answer is a page or a 422,
never a 500 (an exception in decoding, or an overflow in the database driver)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pantherahive.core.errors import ValidationFailed
from pantherahive.core.pagination import decode_time_id_cursor, encode_cursor
from tests.conftest import TenantHandle

ID = str(uuid.uuid4())
# Each of these once decoded "fine" or crashed the decoder, and ended as a 500.
CRAFTED: list[list[Any]] = [
    ["9999-12-31T23:59:59-14:00", ID],  # overflows when converted to UTC
    ["0001-01-01T00:00:00+14:00", ID],
    ["0001-01-01T00:00:00+00:00", ID],  # at the calendar's edge
    ["9999-12-31T23:59:59.999999+00:00", ID],
    ["2024-01-15T12:00:00", ID],  # naive: which zone?
    ["2024-01-15T12:00:00+00:00", 123],  # UUID(123) is an AttributeError
    ["2024-01-15T12:00:00+00:00", ["x"]],
    ["2024-01-15T12:00:00+00:00", {"a": 1}],
    ["2024-01-15T12:00:00+00:00", None],
    [1705320000, ID],
    [None, None],
    ["not a time", "not an id"],
]
CRAFTED_AUDIT: list[list[Any]] = [
    ["9999-12-31T23:59:59-14:00", 5],
    ["0001-01-01T00:00:00+14:00", 5],
    ["2024-01-15T12:00:00", 5],
    ["2024-01-15T12:00:00+00:00", 2**63],
    ["2024-01-15T12:00:00+00:00", True],
    [["x"], 5],
]
LISTS = [
    "/v1/users",
    "/v1/projects",
    "/v1/projects/{project}/members",
    "/v1/notifications",
    "/v1/notifications/deliveries",
    "/v1/webhooks",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=5,
)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: f"{'+' if m >= 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}"
)
edge_times = st.builds(
    lambda day, offset: day + offset,
    st.sampled_from(["0001-01-01T00:00:00", "0001-01-02T13:00:00", "9999-12-31T23:59:59",
                     "9999-12-30T11:00:00", "2024-02-29T12:00:00"]),
    offsets | st.just(""),
)
stamps = edge_times | json_values
ids = st.uuids().map(str) | json_values


@given(stamp=stamps, raw_id=ids)
@settings(max_examples=300, deadline=None)
def test_decoder_returns_a_usable_key_or_a_422(stamp: Any, raw_id: Any) -> None:
    refused: ValidationFailed | None = None
    try:
        decoded = decode_time_id_cursor(encode_cursor([stamp, raw_id]))
    except ValidationFailed as exc:
        refused = exc
    if refused is not None:
        assert refused.status == 422
        assert [e.field for e in refused.errors] == ["cursor"]
        return
    assert decoded is not None
    moment, row_id = decoded
    assert moment.tzinfo is UTC
    assert isinstance(row_id, uuid.UUID)
    # what the database driver does with it must not overflow either
    assert moment.astimezone(UTC).replace(tzinfo=None) > datetime.min


async def _project(client: httpx.AsyncClient, tenant: TenantHandle) -> str:
    made = await client.post("/v1/projects", headers=tenant.admin.headers, json={"name": "p"})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


@pytest.mark.parametrize("values", CRAFTED, ids=[repr(v)[:40] for v in CRAFTED])
async def test_every_time_ordered_list_answers_crafted_cursors_with_422(
    client: httpx.AsyncClient, tenant: TenantHandle, values: list[Any]
) -> None:
    project = await _project(client, tenant)
    cursor = encode_cursor(values)
    for template in LISTS:
        path = template.format(project=project)
        response = await client.get(path, headers=tenant.admin.headers, params={"cursor": cursor})
        assert response.status_code == 422, (path, response.text)
        assert response.json()["errors"] == [
            {"field": "cursor", "message": "malformed or foreign cursor"}
        ]


@pytest.mark.parametrize("values", CRAFTED_AUDIT, ids=[repr(v)[:40] for v in CRAFTED_AUDIT])
async def test_audit_list_answers_crafted_cursors_with_422(
    client: httpx.AsyncClient, tenant: TenantHandle, values: list[Any]
) -> None:
    response = await client.get(
        "/v1/audit-events", headers=tenant.admin.headers, params={"cursor": encode_cursor(values)}
    )
    assert response.status_code == 422, response.text


@given(stamp=stamps, raw_id=ids)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
async def test_users_list_never_fails_on_a_fuzzed_cursor(
    client: httpx.AsyncClient, tenant: TenantHandle, stamp: Any, raw_id: Any
) -> None:
    response = await client.get(
        "/v1/users",
        headers=tenant.admin.headers,
        params={"cursor": encode_cursor([stamp, raw_id])},
    )
    assert response.status_code in (200, 422), response.text


async def test_a_real_cursor_still_pages(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    first = await client.get("/v1/users", headers=tenant.admin.headers, params={"limit": 1})
    cursor = first.json()["nextCursor"]
    assert cursor is not None
    second = await client.get(
        "/v1/users", headers=tenant.admin.headers, params={"limit": 1, "cursor": cursor}
    )
    assert second.status_code == 200
    assert second.json()["items"][0]["id"] != first.json()["items"][0]["id"]
