"""The shared kit: one clock, one backoff schedule with jitter, one camel-case rule, one
page cutter."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from pantherahive.core import clock
from pantherahive.core.naming import camel
from pantherahive.core.pagination import cut_page, cut_time_id_page, decode_time_id_cursor
from pantherahive.core.retry import Backoff, BackoffState


def test_clock_is_utc_and_can_be_frozen_for_everyone() -> None:
    assert clock.now().tzinfo is UTC
    moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with clock.frozen(lambda: moment):
        assert clock.now() == moment
    assert clock.now() != moment


def test_backoff_doubles_up_to_its_maximum_without_jitter() -> None:
    policy = Backoff(base=0.5, maximum=4.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.delay(10_000) == 4.0


def test_backoff_jitter_spreads_waits_below_the_cap() -> None:
    random.seed(7)
    policy = Backoff(base=1.0, maximum=8.0)
    waits = [policy.delay(4) for _ in range(200)]
    assert all(0.0 <= wait <= 8.0 for wait in waits)
    # Workers that failed together do not retry together: the waits are spread out.
    assert len({round(wait, 3) for wait in waits}) > 150
    assert min(waits) < 2.0 < 6.0 < max(waits)


def test_partial_jitter_keeps_a_floor() -> None:
    random.seed(3)
    policy = Backoff(base=2.0, maximum=2.0, jitter=0.25)
    assert all(1.5 <= policy.delay(1) <= 2.0 for _ in range(100))


def test_backoff_state_starts_over_after_success() -> None:
    state = BackoffState(Backoff(base=1.0, maximum=10.0, jitter=0.0))
    assert [state.failed(), state.failed(), state.failed()] == [1.0, 2.0, 4.0]
    state.succeeded()
    assert state.failed() == 1.0


@pytest.mark.parametrize(
    ("name", "expected"),
    [("assignee_id", "assigneeId"), ("due_date", "dueDate"), ("id", "id"),
     ("first_name", "firstName")],
)
def test_camel(name: str, expected: str) -> None:
    assert camel(name) == expected


def test_cut_page_keeps_limit_rows_and_points_past_the_last() -> None:
    rows = list(range(6))
    page, cursor = cut_page(rows, 5, lambda row: [row])
    assert page == [0, 1, 2, 3, 4]
    assert cursor is not None
    assert cut_page(rows[:5], 5, lambda row: [row]) == ([0, 1, 2, 3, 4], None)


def test_cut_time_id_page_round_trips_through_the_decoder() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[tuple[datetime, UUID]] = [(moment, uuid4()) for _ in range(3)]
    page, cursor = cut_time_id_page(rows, 2, lambda row: row)
    assert page == rows[:2]
    assert decode_time_id_cursor(cursor) == rows[1]
