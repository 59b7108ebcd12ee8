"""Opaque keyset cursors.

A cursor is the sort key of the last row of a page (plus its id, which breaks ties), so a
page never skips or repeats rows when others are inserted meanwhile. It is signed-free on
purpose: it only narrows a query the caller is already allowed to run, and a tampered
cursor fails validation (422) rather than leaking anything.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from pantherahive.core.errors import FieldError, ValidationFailed

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


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
    try:
        return datetime.fromisoformat(stamp), UUID(raw_id)
    except (TypeError, ValueError) as exc:
        raise _bad_cursor() from exc


def _bad_cursor() -> ValidationFailed:
    return ValidationFailed(
        "The cursor is not valid for this list.",
        errors=[FieldError("cursor", "malformed or foreign cursor")],
    )
