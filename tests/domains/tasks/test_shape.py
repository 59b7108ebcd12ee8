"""A task's shape is declared once (``TaskRecord``): the document the routes write with
orjson, the columns the repository reads and writes and the ``task.created`` payload all
come from it, and must agree with the response model, the table and the event."""

from __future__ import annotations

import json as stdlib_json
from datetime import UTC, date, datetime

from asyncpg.pgproto.pgproto import UUID as AsyncpgUUID
from hypothesis import given
from hypothesis import strategies as st

from pantherahive.core import json
from pantherahive.core.schemas import Page
from pantherahive.domains.tasks import events, repository
from pantherahive.domains.tasks.repository import TASK_FIELDS, TaskRecord
from pantherahive.domains.tasks.router import _document, _one
from pantherahive.domains.tasks.schemas import TaskPriority, TaskRead, TaskStatus, TaskUpdate
from pantherahive.domains.tasks.tables import Task

# asyncpg hands out its own UUID subclass; Python code builds plain ones.
uuids = st.uuids() | st.uuids().map(lambda u: AsyncpgUUID(str(u)))
stamps = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
)
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))

# Only the fields whose type says too little are spelled out; every other field of the
# declaration (one added later included) is generated from its type.
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
    version=st.integers(min_value=1, max_value=2**31 - 1),
    created_at=stamps,
    updated_at=stamps,
    completed_at=st.none() | stamps,
    sort_key=st.none() | stamps,
)


@given(st.lists(records, max_size=4), st.none() | st.text(max_size=20))
def test_the_fast_documents_are_what_the_response_model_would_write(
    rows: list[TaskRecord], cursor: str | None
) -> None:
    fast = json.dumps({"items": [_document(row) for row in rows], "nextCursor": cursor})
    model = Page[TaskRead](
        items=[TaskRead.model_validate(row) for row in rows], next_cursor=cursor
    ).model_dump_json(by_alias=True)
    assert stdlib_json.loads(fast) == stdlib_json.loads(model)
    for row in rows:
        one = _one(row)
        assert stdlib_json.loads(one.body) == TaskRead.model_validate(row).model_dump(
            mode="json", by_alias=True
        )


def test_the_document_has_the_response_models_fields_in_its_order() -> None:
    assert list(TASK_FIELDS) == list(TaskRead.model_fields)


def test_an_insert_writes_every_column_postgresql_does_not_fill_itself() -> None:
    """The plain and writable fields are the table's columns, less the tenant (``$1``) and
    the generated ones."""
    written = {
        column.key for column in Task.__table__.columns
        if column.key != "tenant_id" and column.computed is None
    }
    assert set(repository._STORED) == written
    assert repository._INSERT_SQL.count("$") == len(written) + 1


def test_a_patch_only_sets_writable_columns() -> None:
    assert set(TaskUpdate.model_fields) <= repository._UPDATABLE
    assert set(repository._STORED) >= repository._UPDATABLE
    assert {"id", "project_id", "reporter_id", "created_at"}.isdisjoint(repository._UPDATABLE)


def test_task_created_carries_fields_of_the_record() -> None:
    assert set(events.TaskCreated.model_fields) <= set(TASK_FIELDS)

