"""core.json writes the same JSON as the Pydantic response models it stands in for."""

from __future__ import annotations

import json as stdlib_json
import uuid
from datetime import UTC, date, datetime

from asyncpg.pgproto.pgproto import UUID as AsyncpgUUID
from hypothesis import given
from hypothesis import strategies as st

from pantherahive.core import json
from pantherahive.core.schemas import Page
from pantherahive.domains.tasks.repository import TaskRecord
from pantherahive.domains.tasks.router import _document
from pantherahive.domains.tasks.schemas import TaskPriority, TaskRead, TaskStatus

uuids = st.uuids().map(lambda u: AsyncpgUUID(str(u)))
stamps = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
)
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))

records = st.builds(
    TaskRecord,
    id=uuids,
    project_id=uuids,
    title=text,
    description=st.none() | text,
    status=st.sampled_from([s.value for s in TaskStatus]),
    priority=st.sampled_from([p.value for p in TaskPriority]),
    assignee_id=st.none() | uuids,
    reporter_id=uuids,
    due_date=st.none() | st.dates(min_value=date(1, 1, 2), max_value=date(9999, 12, 30)),
    labels=st.lists(text, max_size=3),
    depends_on=st.lists(uuids, max_size=3),
    blocked=st.booleans(),
    version=st.integers(min_value=1, max_value=2**31 - 1),
    created_at=stamps,
    updated_at=stamps,
    completed_at=st.none() | stamps,
)


@given(st.lists(records, max_size=4), st.none() | st.text(max_size=20))
def test_a_page_of_tasks_is_what_the_response_model_would_write(
    rows: list[TaskRecord], cursor: str | None
) -> None:
    fast = json.dumps({"items": [_document(row) for row in rows], "nextCursor": cursor})
    model = Page[TaskRead](
        items=[TaskRead.model_validate(row) for row in rows], next_cursor=cursor
    ).model_dump_json(by_alias=True)
    assert stdlib_json.loads(fast) == stdlib_json.loads(model)


def test_plain_uuids_dates_and_utc_times() -> None:
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    written = json.dumps(
        {"u": value, "d": date(2024, 1, 15), "t": datetime(2024, 1, 15, 12, tzinfo=UTC)}
    )
    assert written == (
        b'{"u":"12345678-1234-5678-1234-567812345678","d":"2024-01-15",'
        b'"t":"2024-01-15T12:00:00Z"}'
    )
