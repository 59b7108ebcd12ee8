"""The AsyncAPI document of the platform's events: the committed copy is the one the
classes generate, it is a valid AsyncAPI 3.0.0 document, its payload schemas accept what
the platform puts on the wire, and ``/asyncapi.json`` serves it."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from jsonschema import Draft7Validator, Draft202012Validator

from pantherahive.cli.asyncapi import Format, render
from pantherahive.consumers import asyncapi, published_events
from pantherahive.core.events import EventData
from pantherahive.domains.tasks.events import TaskDeleted
from pantherahive.infra.asyncapi import asyncapi_document
from pantherahive.infra.bus.codec import to_document
from pantherahive.infra.bus.consumer import Event
from pantherahive.infra.security.authz import AuthzDenied

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"
SCHEMA = Path(__file__).parent / "schemas" / "asyncapi-3.0.0.json"


@cache
def asyncapi_validator() -> Draft7Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def problems(document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}"
        for error in asyncapi_validator().iter_errors(document)
    ]


def test_the_committed_document_is_current() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(asyncapi(), Format.YAML), (
        "docs/asyncapi.yaml is stale: run `pantherahive asyncapi --output docs/asyncapi.yaml`"
    )


def test_the_document_is_valid_asyncapi_3_0_0() -> None:
    document = asyncapi()
    assert document["asyncapi"] == "3.0.0"
    assert problems(document) == []


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = document
        for key in parents:
            node = node[key]
        node[last] = value

    return change


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(_set("asyncapi", "2.6.0"), id="another version"),
        pytest.param(lambda d: d.pop("info"), id="no info"),
        pytest.param(_set("operations/publish.task.created/action", "publish"), id="2.x action"),
        pytest.param(_set("servers/nats/protocol", None), id="server without protocol"),
        pytest.param(_set("channels/task.created/address", 42), id="address not a string"),
        pytest.param(
            _set("channels/task.created/parameters/tenantId/location", "payload.tenantId"),
            id="parameter location not a runtime expression",
        ),
        pytest.param(
            _set("channels/task.created/bindings/kafka/partition", 3),
            id="unknown kafka channel binding field",
        ),
        pytest.param(
            _set("components/schemas/TaskCreated/type", 42), id="payload schema not a schema"
        ),
    ],
)
def test_a_broken_document_is_refused(break_it: Callable[[dict[str, Any]], None]) -> None:
    """The vendored schema really applies the 3.0.0 rules (not just "is an object")."""
    document = copy.deepcopy(asyncapi())
    break_it(document)
    assert problems(document) != []


def _pointers(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _pointers(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _pointers(value)]
    return []


def test_every_reference_resolves_inside_the_document() -> None:
    document = asyncapi()
    for ref in _pointers(document):
        assert ref.startswith("#/"), ref
        node: Any = document
        for key in ref[2:].split("/"):
            assert key in node, f"{ref} does not resolve"
            node = node[key]


def test_one_channel_per_type_and_one_message_per_class() -> None:
    document = asyncapi()
    classes = published_events()
    assert set(document["channels"]) == {cls.TYPE for cls in classes}
    assert set(document["components"]["messages"]) == {
        f"{cls.TYPE}.v{cls.VERSION}" for cls in classes
    }
    channel = document["channels"]["task.created"]
    assert channel["address"] == "pantherahive.events.{tenantId}.task.created"
    assert channel["bindings"]["kafka"]["topic"] == "PANTHERAHIVE_EVENTS"
    assert document["operations"]["publish.task.created"]["action"] == "send"


class _Nested(EventData):
    label: str


class _Shelved(EventData, type="test_asyncapi.shelved", subject="book"):
    """A book was shelved.

    Second paragraph: the details."""

    shelf: _Nested


class _ShelvedV2(EventData, type="test_asyncapi.shelved", version=2, subject="book"):
    shelves: list[str]


def _generate(*events: type[EventData]) -> dict[str, Any]:
    return asyncapi_document(events, version="9", subject_prefix="pfx", topic="TOPIC")


def test_the_versions_of_a_type_share_its_channel_whatever_the_declaration_order() -> None:
    document = _generate(_ShelvedV2, _Shelved)
    assert document == _generate(_Shelved, _ShelvedV2)
    assert json.dumps(document) == json.dumps(_generate(_Shelved, _ShelvedV2))
    [channel] = document["channels"].values()
    assert channel["address"] == "pfx.{tenantId}.test_asyncapi.shelved"
    assert list(channel["messages"]) == ["test_asyncapi.shelved.v1", "test_asyncapi.shelved.v2"]
    [operation] = document["operations"].values()
    assert [ref["$ref"] for ref in operation["messages"]] == [
        "#/channels/test_asyncapi.shelved/messages/test_asyncapi.shelved.v1",
        "#/channels/test_asyncapi.shelved/messages/test_asyncapi.shelved.v2",
    ]
    v1 = document["components"]["messages"]["test_asyncapi.shelved.v1"]
    assert v1["summary"] == "A book was shelved."
    assert v1["description"].endswith("Second paragraph: the details.")
    schemas = document["components"]["schemas"]
    # Nested models are hoisted beside the class, and referenced there.
    assert schemas["_Shelved"]["properties"]["shelf"] == {"$ref": "#/components/schemas/_Nested"}
    assert "_Nested" in schemas
    assert problems(document) == []


def _another_shelved() -> type[EventData]:
    class _Shelved(EventData, type="test_asyncapi.other", subject="book"):
        title: str

    return _Shelved


def test_two_different_schemas_with_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="two different schemas are both named _Shelved"):
        _generate(_Shelved, _another_shelved())


def _envelope(event_type: str, version: int, subject_type: str, data: dict[str, Any]) -> Any:
    event = Event(
        id=uuid4(), type=event_type, version=version, tenant_id=uuid4(),
        occurred_at=datetime.now(UTC), actor_id=None, subject_type=subject_type,
        subject_id=str(uuid4()), data=data, request_id="req-1", ip="127.0.0.1", position=7,
    )
    return to_document(event)  # what the relay puts on NATS and Kafka


def _payload_validator(message: str) -> Draft202012Validator:
    # The document as the root resource, so the payload's #/components/... refs resolve.
    return Draft202012Validator(
        {**asyncapi(), "$ref": f"#/components/messages/{message}/payload"}
    )


def test_a_message_payload_accepts_the_wire_form_of_its_class_only() -> None:
    data = TaskDeleted(project_id=uuid4(), title="Old").to_json()
    validator = _payload_validator("task.deleted.v1")
    assert list(validator.iter_errors(_envelope("task.deleted", 1, "task", data))) == []
    for wrong in (
        _envelope("task.deleted", 2, "task", data),
        _envelope("task.created", 1, "task", data),
        _envelope("task.deleted", 1, "project", data),
        _envelope("task.deleted", 1, "task", {"title": "no project"}),
    ):
        assert list(validator.iter_errors(wrong)) != []


def test_an_event_whose_subject_varies_accepts_any_subject_type() -> None:
    data = AuthzDenied(action="project.delete", role="MEMBER").to_json()
    validator = _payload_validator("authz.denied.v1")
    for subject_type in ("project", "audit"):
        assert list(validator.iter_errors(_envelope("authz.denied", 1, subject_type, data))) == []


async def test_asyncapi_json_serves_the_document_without_authentication(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == asyncapi()
    assert "/asyncapi.json" not in (await client.get("/openapi.json")).json()["paths"]
