"""core.json writes UUIDs, dates and UTC times as the Pydantic response models do."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from pantherahive.core import json

# That the tasks' fast documents equal what TaskRead would write is shown, for every field
# of the one declaration, by the property test in tests/domains/tasks/test_shape.py.


def test_plain_uuids_dates_and_utc_times() -> None:
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    written = json.dumps(
        {"u": value, "d": date(2024, 1, 15), "t": datetime(2024, 1, 15, 12, tzinfo=UTC)}
    )
    assert written == (
        b'{"u":"12345678-1234-5678-1234-567812345678","d":"2024-01-15",'
        b'"t":"2024-01-15T12:00:00Z"}'
    )
