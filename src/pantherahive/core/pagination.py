"""Opaque keyset cursors.

A cursor is the sort key of the last row of a page (plus its id, which breaks ties), so a
page never skips or repeats rows when others are inserted meanwhile. It is signed-free on
purpose: it only narrows a query the caller is already allowed to run, and a tampered
cursor fails validation (422) rather than leaking anything.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import orjson

from pantherahive.core.errors import FieldError, ValidationFailed

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
T = TypeVar("T")


def cut_page(
    rows: Sequence[T], limit: int, cursor_of: Callable[[T], list[Any]]
) -> tuple[list[T], str | None]:
    """A page from a query that asked for ``limit + 1`` rows: the first ``limit``, and the
    cursor of the last of them when the extra row shows there are more (else None).
    ``cursor_of`` gives the values the list's cursor carries for a row (its sort key and
    id)."""
    if len(rows) <= limit:
        return list(rows), None
    page = list(rows[:limit])
    return page, encode_cursor(cursor_of(page[-1]))


def cut_time_id_page(
    rows: Sequence[T], limit: int, key: Callable[[T], tuple[datetime, UUID]]
) -> tuple[list[T], str | None]:
    """``cut_page`` for lists ordered by (creation time, id): the cursor that
    :func:`decode_time_id_cursor` reads back."""

    def cursor_of(row: T) -> list[Any]:
        moment, row_id = key(row)
        return [moment.isoformat(), str(row_id)]

    return cut_page(rows, limit, cursor_of)


def encode_cursor(values: list[Any]) -> str:
    raw = orjson.dumps(values, default=str)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, *, arity: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise _bad_cursor() from exc
    if not isinstance(values, list) or len(values) != arity:
        raise _bad_cursor()
    return values


def decode_time_id_cursor(cursor: str | None) -> tuple[datetime, UUID] | None:
    """The (timestamp, id) key of lists ordered by a creation time with ties broken by id."""
    if not cursor:
        return None
    stamp, raw_id = decode_cursor(cursor, arity=2)
    return parse_cursor_time(stamp), parse_cursor_uuid(raw_id)


# A cursor minted by the server holds a real row's timestamp, never one at the calendar's
# edges; values there overflow on the way to UTC or in the database driver.
_EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
_LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


def parse_cursor_time(value: object) -> datetime:
    """A timestamp decoded from a cursor, in UTC; anything else is a 422.

    Only a timezone-aware ISO 8601 string is accepted (a naive one is ambiguous), and it
    is converted to UTC here, so an offset that pushes it past year 1 or 9999 fails now
    rather than as an overflow in the driver (a 500).
    """
    if not isinstance(value, str):
        raise _bad_cursor()
    try:
        moment = datetime.fromisoformat(value)
        if moment.utcoffset() is None:
            raise ValueError("naive timestamp")
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise _bad_cursor() from exc
    if not _EARLIEST <= moment <= _LATEST:
        raise _bad_cursor()
    return moment


def parse_cursor_uuid(value: object) -> UUID:
    """An id decoded from a cursor; anything but a UUID string is a 422."""
    if not isinstance(value, str):
        raise _bad_cursor()
    try:
        return UUID(value)
    except ValueError as exc:
        raise _bad_cursor() from exc


def _bad_cursor() -> ValidationFailed:
    return ValidationFailed(
        "The cursor is not valid for this list.",
        errors=[FieldError("cursor", "malformed or foreign cursor")],
    )
