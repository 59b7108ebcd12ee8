"""Consumers subscribe by schema: each event reaches its handler parsed into the class of
its (type, version); an unknown version or data that does not match is a permanent
failure (parked with the reason), never a guess."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from pydantic import Field

from pantherahive.core.events import EventData, declared_events, event_class
from pantherahive.infra.bus.consumer import (
    Event,
    InvalidEventData,
    PermanentFailure,
    UnknownEventVersion,
    on,
    subscribe,
)
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.security.authz import AuthzDenied


class _Moved(EventData, type="test.moved", subject="thing"):
    thing_id: UUID
    from_: str = Field(alias="from")
    to: str


class _MovedV2(EventData, type="test.moved", version=2, subject="thing"):
    thing_id: UUID
    path: list[str]


def _event(event_type: str, version: int, data: dict[str, Any]) -> Event:
    return Event(
        id=uuid4(), type=event_type, version=version, tenant_id=uuid4(),
        occurred_at=datetime.now(UTC), actor_id=None, subject_type="thing",
        subject_id="x", data=data,
    )


def test_declaring_a_class_registers_its_type_version_and_subject() -> None:
    assert event_class("test.moved", 1) is _Moved
    assert event_class("test.moved", 2) is _MovedV2
    assert (_Moved.TYPE, _Moved.VERSION, _Moved.SUBJECT) == ("test.moved", 1, "thing")
    assert _Moved in declared_events()


def test_wire_form_is_camel_case_json() -> None:
    thing = uuid4()
    assert _Moved(thing_id=thing, from_="a", to="b").to_json() == {
        "thingId": str(thing), "from": "a", "to": "b"
    }


def test_a_type_and_version_cannot_be_declared_twice() -> None:
    with pytest.raises(TypeError, match="declared twice"):
        class _Again(EventData, type="test.moved", subject="thing"):
            pass


async def test_handler_receives_the_parsed_payload_of_its_version() -> None:
    seen: list[object] = []

    async def moved(_session: Any, _event: Event, data: _Moved) -> None:
        seen.append(data)

    async def moved_v2(_session: Any, _event: Event, data: _MovedV2) -> None:
        seen.append(data)

    spec = subscribe("test.consumer", on(_Moved, moved), on(_MovedV2, moved_v2))
    assert spec.types == frozenset({"test.moved"})
    thing = uuid4()
    await spec.handler(None, _event("test.moved", 1, {"thingId": str(thing), "from": "a",
                                                      "to": "b", "addedLater": 1}))
    await spec.handler(None, _event("test.moved", 2, {"thingId": str(thing), "path": ["a"]}))
    assert seen == [_Moved(thing_id=thing, from_="a", to="b"),
                    _MovedV2(thing_id=thing, path=["a"])]


async def test_unknown_version_is_a_permanent_failure_naming_what_is_known() -> None:
    async def moved(_session: Any, _event: Event, _data: _Moved) -> None:
        raise AssertionError("must not be called")

    spec = subscribe("test.consumer", on(_Moved, moved))
    with pytest.raises(UnknownEventVersion) as caught:
        await spec.handler(None, _event("test.moved", 7, {}))
    assert isinstance(caught.value, PermanentFailure)
    assert str(caught.value) == (
        "consumer test.consumer has no schema for test.moved version 7 (it knows version 1)"
    )


async def test_data_that_does_not_match_its_schema_is_a_permanent_failure() -> None:
    async def moved(_session: Any, _event: Event, _data: _Moved) -> None:
        raise AssertionError("must not be called")

    spec = subscribe("test.consumer", on(_Moved, moved))
    with pytest.raises(InvalidEventData, match=r"test\.moved v1 data does not match"):
        await spec.handler(None, _event("test.moved", 1, {"thingId": "not-a-uuid"}))


def test_subscribing_twice_to_one_schema_is_refused() -> None:
    async def moved(_session: Any, _event: Event, _data: _Moved) -> None:
        return None

    with pytest.raises(ValueError, match="subscribes twice"):
        subscribe("test.consumer", on(_Moved, moved), on(_Moved, moved))


async def test_emit_keeps_a_declared_subject_and_asks_for_an_open_one() -> None:
    """Refused before anything is written (so no session is needed to show it)."""
    with pytest.raises(ValueError, match="is about a thing, not a user"):
        await emit(None, _Moved(thing_id=uuid4(), from_="a", to="b"),  # type: ignore[arg-type]
                   subject_type="user", subject_id="x", tenant_id=uuid4())
    with pytest.raises(ValueError, match="needs the subject type"):
        await emit(None, AuthzDenied(action="x", role="MEMBER"),  # type: ignore[arg-type]
                   subject_id="x", tenant_id=uuid4())
