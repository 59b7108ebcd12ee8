"""Base Pydantic models: camelCase on the wire, unknown request fields refused."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

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


StorableDate = Annotated[
    date,
    AfterValidator(_storable_date),
    Field(description=f"A date from {MIN_STORABLE_DATE} to {MAX_STORABLE_DATE}."),
]


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
