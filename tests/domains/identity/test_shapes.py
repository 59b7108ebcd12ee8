"""The user's shape is declared once: the schemas name the columns the service reads and
writes and the event it publishes, so every name they carry must be a column."""

from __future__ import annotations

from pantherahive.domains.identity import events
from pantherahive.domains.identity.schemas import UserCreate, UserRead, UserUpdate
from pantherahive.domains.identity.tables import User

COLUMNS = set(User.__table__.c.keys())


def test_the_read_columns_are_the_response_model() -> None:
    assert set(UserRead.model_fields) <= COLUMNS


def test_written_fields_and_the_creation_event_are_columns() -> None:
    assert set(UserCreate.model_fields) - {"password"} <= COLUMNS
    assert set(UserUpdate.model_fields) <= COLUMNS
    assert set(events.UserCreated.model_fields) <= COLUMNS
