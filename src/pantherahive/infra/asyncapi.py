"""The AsyncAPI 3.0 document of the platform's events, generated from their classes.

The generator knows no service: it is given the declared ``EventData`` classes (the
composition root imports every service's ``events`` module, ``consumers.published_events``)
and describes each type as a channel addressed by its NATS subject, carried on the Kafka
topic, with one message per version whose payload is the envelope around the class's JSON
schema. The output is a plain dict in a stable order, so the committed copy
(``docs/asyncapi.yaml``) can be compared with a fresh one.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from pantherahive.core.events import ANY_SUBJECT, EventData

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
ENVELOPE = "EventEnvelope"
_SCHEMAS = "#/components/schemas/"


def asyncapi_document(
    events: Sequence[type[EventData]],
    *,
    version: str,
    subject_prefix: str,
    topic: str,
) -> dict[str, Any]:
    """The document for ``events``: one channel per event type (address
    ``<subject_prefix>.{tenantId}.<type>``, Kafka ``topic`` keyed by tenant), one message
    per (type, version), one ``send`` operation per channel (the platform publishes)."""
    schemas: dict[str, Any] = {ENVELOPE: _envelope_schema()}
    messages: dict[str, Any] = {}
    versions: dict[str, list[type[EventData]]] = {}
    for cls in sorted(events, key=lambda c: (c.TYPE, c.VERSION)):
        versions.setdefault(cls.TYPE, []).append(cls)
        messages[_message_id(cls)] = _message(cls)
        _add_schemas(schemas, cls)
    channels = {
        event_type: _channel(event_type, classes, subject_prefix, topic)
        for event_type, classes in versions.items()
    }
    operations = {
        f"publish.{event_type}": _operation(event_type, classes)
        for event_type, classes in versions.items()
    }
    return _sorted(
        {
            "asyncapi": ASYNCAPI_VERSION,
            "info": {
                "title": "PantheraHive platform events",
                "version": version,
                "description": (
                    "Every event the platform publishes, generated from the services' "
                    "typed event classes (`domains/<service>/events.py`). Each event is "
                    "written to the transactional outbox with the change it describes and "
                    "relayed to NATS JetStream (subject per tenant and type) or Kafka (one "
                    "topic, key = tenant id). A new version of a type is a new message; "
                    "a consumer that meets a version it has no schema for parks the event "
                    "as a dead letter with the reason (docs/events.md)."
                ),
                "license": {
                    "name": "Apache-2.0",
                    "url": "https://www.apache.org/licenses/LICENSE-2.0",
                },
            },
            "defaultContentType": "application/json",
            "servers": _servers(subject_prefix, topic),
            "channels": channels,
            "operations": operations,
            "components": {"schemas": schemas, "messages": messages},
        }
    )


def _message_id(cls: type[EventData]) -> str:
    return f"{cls.TYPE}.v{cls.VERSION}"


def _servers(subject_prefix: str, topic: str) -> dict[str, Any]:
    def host(default: str) -> dict[str, Any]:
        return {"host": {"default": default, "description": "host:port of `BUS_URL`."}}

    return {
        "nats": {
            "host": "{host}",
            "protocol": "nats",
            "variables": host("localhost:4222"),
            "description": (
                f"`BUS_URL=nats://…`: JetStream stream `{topic}` (`PANTHERAHIVE_BUS_STREAM`) "
                f"on subjects `{subject_prefix}.>`; the message id header `Nats-Msg-Id` is "
                "the event id."
            ),
        },
        "kafka": {
            "host": "{host}",
            "protocol": "kafka",
            "variables": host("localhost:9092"),
            "description": (
                f"`BUS_URL=kafka://…`: topic `{topic}` (`PANTHERAHIVE_BUS_STREAM`), record "
                "key = tenant id, so a tenant's events stay in one partition, in order."
            ),
        },
    }


def _channel(
    event_type: str, classes: list[type[EventData]], subject_prefix: str, topic: str
) -> dict[str, Any]:
    return {
        "address": f"{subject_prefix}.{{tenantId}}.{event_type}",
        "title": event_type,
        "description": (
            f"NATS subject `{subject_prefix}.<tenantId>.{event_type}`; on Kafka, records "
            f"of topic `{topic}` whose `type` is `{event_type}`."
        ),
        "parameters": {
            "tenantId": {
                "description": "The tenant the event belongs to.",
                "location": "$message.payload#/tenantId",
            }
        },
        "messages": {
            _message_id(cls): {"$ref": f"#/components/messages/{_message_id(cls)}"}
            for cls in classes
        },
        "bindings": {"kafka": {"topic": topic, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _operation(event_type: str, classes: list[type[EventData]]) -> dict[str, Any]:
    return {
        "action": "send",
        "channel": {"$ref": f"#/channels/{event_type}"},
        "summary": f"The platform publishes `{event_type}` (outbox relay).",
        "messages": [
            {"$ref": f"#/channels/{event_type}/messages/{_message_id(cls)}"} for cls in classes
        ],
    }


def _message(cls: type[EventData]) -> dict[str, Any]:
    doc = inspect.cleandoc(cls.__doc__) if cls.__doc__ else ""
    summary, _, more = doc.partition("\n\n")
    subject = (
        "its subject type varies" if cls.SUBJECT == ANY_SUBJECT else f"about a `{cls.SUBJECT}`"
    )
    message: dict[str, Any] = {
        "name": cls.__name__,
        "title": f"{cls.TYPE} v{cls.VERSION}",
        "summary": summary.replace("\n", " ")
        or f"`{cls.TYPE}` version {cls.VERSION}, {subject}.",
        "contentType": "application/json",
        "payload": _payload(cls),
        "bindings": {
            "kafka": {
                "key": {"type": "string", "format": "uuid", "description": "The tenant id."},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }
    if more:
        message["description"] = doc
    return message


def _payload(cls: type[EventData]) -> dict[str, Any]:
    subject: dict[str, Any] = {"type": "string"}
    if cls.SUBJECT != ANY_SUBJECT:
        subject["const"] = cls.SUBJECT
    return {
        "allOf": [
            {"$ref": _SCHEMAS + ENVELOPE},
            {
                "type": "object",
                "properties": {
                    "type": {"const": cls.TYPE},
                    "version": {"const": cls.VERSION},
                    "subject": {"type": "object", "properties": {"type": subject}},
                    "data": {"$ref": _SCHEMAS + cls.__name__},
                },
            },
        ]
    }


class _WireSchema(GenerateJsonSchema):
    """Pydantic's JSON schema without a title per field ("Projectid" for ``projectId``
    says nothing the property name does not)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _add_schemas(schemas: dict[str, Any], cls: type[EventData]) -> None:
    """The class's JSON schema (wire form: camelCase) under its name, and its nested
    definitions beside it; one name used for two different schemas is refused."""
    schema = cls.model_json_schema(
        by_alias=True,
        mode="serialization",
        ref_template=_SCHEMAS + "{model}",
        schema_generator=_WireSchema,
    )
    found = {cls.__name__: schema, **schema.pop("$defs", {})}
    for name, definition in found.items():
        if name in schemas and schemas[name] != definition:
            raise ValueError(f"two different schemas are both named {name} ({cls.TYPE})")
        schemas[name] = definition


def _envelope_schema() -> dict[str, Any]:
    uuid = {"type": "string", "format": "uuid"}
    return {
        "type": "object",
        "description": (
            "The envelope of every event. `requestId`, `ip`, `position` and `audited` are "
            "transport metadata of the platform's own consumers; webhooks receive the "
            "envelope without them."
        ),
        "required": [
            "id", "type", "version", "tenantId", "occurredAt", "actorId", "subject", "data"
        ],
        "properties": {
            "id": {**uuid, "description": "Unique per event: consumers deduplicate on it."},
            "type": {"type": "string", "description": "`noun.verb_past`."},
            "version": {
                "type": "integer",
                "minimum": 1,
                "description": "Version of `data`'s schema for this type.",
            },
            "tenantId": uuid,
            "occurredAt": {"type": "string", "format": "date-time"},
            "actorId": {
                "type": ["string", "null"],
                "format": "uuid",
                "description": "The user who caused the event; null for the platform.",
            },
            "subject": {
                "type": "object",
                "required": ["type", "id"],
                "properties": {"type": {"type": "string"}, "id": {"type": "string"}},
            },
            "data": {"type": "object"},
            "requestId": {"type": ["string", "null"]},
            "ip": {"type": ["string", "null"]},
            "position": {"type": ["integer", "null"]},
            "audited": {"type": "boolean"},
        },
    }


def _sorted(document: dict[str, Any]) -> dict[str, Any]:
    """Every mapping with its keys sorted (lists keep their order): the same classes give
    the same document, byte for byte, whatever order they were declared in."""
    result: dict[str, Any] = json.loads(json.dumps(document, sort_keys=True))
    return result
