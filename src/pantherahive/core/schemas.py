"""Base Pydantic models: camelCase on the wire, unknown request fields refused."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from types import NoneType
from typing import Annotated, Any, Generic, Self, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from pantherahive.core.errors import FieldError, ValidationFailed
from pantherahive.core.naming import camel

# asyncpg writes date.min and date.max as PostgreSQL's -infinity and infinity, which are not
# those days: they tie with the 'infinity' that stands for "no date" in sort keys and compare
# unlike any real date. A stored date stays strictly between the two.
MIN_STORABLE_DATE = date(1, 1, 2)
MAX_STORABLE_DATE = date(9999, 12, 30)


def _storable_date(value: date) -> date:
    if not MIN_STORABLE_DATE <= value <= MAX_STORABLE_DATE:
        raise PydanticCustomError(
            "date_out_of_range",
            "must be a date from {min} to {max}",
            {"min": MIN_STORABLE_DATE.isoformat(), "max": MAX_STORABLE_DATE.isoformat()},
        )
    return value


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date_text(value: object) -> object:
    """Pydantic also reads a number (``0``) as a day since 1970; the contract's dates are
    ``YYYY-MM-DD`` text, as the OpenAPI document's ``format: date`` says."""
    if not isinstance(value, date) and not (
        isinstance(value, str) and _ISO_DATE.fullmatch(value)
    ):
        raise PydanticCustomError("date_format", "must be a date as YYYY-MM-DD")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date_text)]

StorableDate = Annotated[
    date,
    BeforeValidator(_iso_date_text),
    AfterValidator(_storable_date),
    Field(description=f"A date from {MIN_STORABLE_DATE} to {MAX_STORABLE_DATE}."),
]


# "Has a character that is not whitespace", for text that is stripped before its length is
# checked. Python strips \x1c-\x1f and \x85 too, which JSON Schema's \s does not cover.
NOT_BLANK = r"[^\s\x1c-\x1f\x85]"


def stripped_text(max_length: int) -> StringConstraints:
    """Text stripped of surrounding whitespace that must keep 1 to ``max_length``
    characters: ``Title = Annotated[str, stripped_text(200)]``."""
    return StringConstraints(
        strip_whitespace=True, min_length=1, max_length=max_length, pattern=NOT_BLANK
    )


Description = Annotated[str, StringConstraints(max_length=10_000)]
"""The free text that describes a project or a task."""

_RFC3339_START = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _rfc3339_text(value: object) -> object:
    """Pydantic also reads a number ("0.5") as seconds since 1970; the contract's
    timestamps are RFC 3339 text, and the OpenAPI document says ``format: date-time``."""
    if isinstance(value, str) and not _RFC3339_START.match(value):
        raise PydanticCustomError(
            "datetime_format", "must be an RFC 3339 date-time such as 2024-01-15T12:00:00Z"
        )
    return value


Rfc3339DateTime = Annotated[datetime, BeforeValidator(_rfc3339_text)]


def _omissible_not_null(schema: dict[str, Any]) -> None:
    """A field of a partial update that may be left out but not sent as ``null`` (the
    service refuses it): the document says so, instead of the ``anyOf [..., null]`` that
    ``X | None = None`` generates."""
    variants = [v for v in schema.pop("anyOf", []) if v.get("type") != "null"]
    schema.pop("default", None)
    if len(variants) == 1:
        schema.update(variants[0])
    elif variants:
        schema["anyOf"] = variants


# ``name: Annotated[str | None, NotNull] = None``: optional in a partial update, never null.
NotNull: Any = Field(json_schema_extra=_omissible_not_null)


def never_null(update: type[BaseModel], read: type[BaseModel]) -> tuple[str, ...]:
    """The fields a partial update may not set to null: those the read model never shows
    null (in the update's declaration order)."""
    return tuple(
        name for name in update.model_fields
        if NoneType not in get_args(read.model_fields[name].annotation)
    )


def refuse_nulls(body: BaseModel, fields: Iterable[str]) -> None:
    """422 for the first of ``fields`` (from :func:`never_null`) the body sends as null."""
    sent = body.model_fields_set
    for name in fields:
        if name in sent and getattr(body, name) is None:
            raise ValidationFailed(
                f"{camel(name)} cannot be null.",
                errors=[FieldError(camel(name), "may not be null")],
            )


class ApiModel(BaseModel):
    """Response models: snake_case in Python, camelCase in JSON."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class RequestModel(ApiModel):
    """Request bodies: unknown fields are a 422, not silently dropped."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", str_strip_whitespace=False
    )

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: object) -> object:
        """PostgreSQL text cannot hold NUL, and UTF-8 cannot hold lone surrogates."""
        for text in _strings(value):
            if "\x00" in text:
                raise ValueError("must not contain NUL characters")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError("must be valid Unicode text") from exc
        return value


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple | set | frozenset):
        return [item for item in value if isinstance(item, str)]
    return []


ItemT = TypeVar("ItemT")


class Page(ApiModel, Generic[ItemT]):
    items: list[ItemT]
    next_cursor: str | None = Field(
        description="Opaque cursor for the next page; null on the last page."
    )

    @classmethod
    def of(cls, rows: Iterable[object], next_cursor: str | None) -> Self:
        """``Page[ItemRead].of(rows, next_cursor)``: each row read into the item model."""
        (item,) = cls.__pydantic_generic_metadata__["args"]
        return cls(items=[item.model_validate(row) for row in rows], next_cursor=next_cursor)
