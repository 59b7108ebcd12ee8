"""Typed, versioned event payloads: the contract between a service and everyone who reads
its events (other services, webhooks, the AsyncAPI document).

Each service declares its events in its own ``events.py`` as subclasses of
:class:`EventData`, one class per (type, version)::

    class TaskDeleted(EventData, type="task.deleted", subject="task"):
        project_id: UUID
        title: str

Producers build the class and hand it to ``infra.bus.outbox.emit``; consumers subscribe
to classes (``infra.bus.consumer.subscribe``) and receive the payload parsed and
validated. The wire form is the camelCase JSON of the model (``to_json``), inside the
envelope ``{id, type, version, tenantId, occurredAt, actorId, subject, data}``.

Declaring a class registers it, so the catalogue of every event the platform publishes
(for the AsyncAPI document) is the set of classes imported.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

_REGISTRY: dict[tuple[str, int], type[EventData]] = {}
# The subject type of an event whose subject differs per emission (authz.denied is about
# whatever was refused): ``emit`` is then told the subject type.
ANY_SUBJECT = "*"


class EventData(BaseModel):
    """The ``data`` of one event type at one version.

    Unknown fields are ignored when reading (a producer may add optional fields within a
    version); a field removed or changed in meaning needs a new version.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )

    TYPE: ClassVar[str]
    VERSION: ClassVar[int]
    SUBJECT: ClassVar[str]

    def __init_subclass__(
        cls,
        *,
        type: str | None = None,
        version: int = 1,
        subject: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if type is None:
            return  # an abstract intermediate class
        if subject is None:
            raise TypeError(
                f"{cls.__name__}: an event declares its subject type "
                f"({ANY_SUBJECT!r} where each emit names it)"
            )
        key = (type, version)
        existing = _REGISTRY.get(key)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise TypeError(f"{type} v{version} is declared twice: {existing} and {cls}")
        cls.TYPE = type
        cls.VERSION = version
        cls.SUBJECT = subject
        _REGISTRY[key] = cls

    def to_json(self) -> dict[str, Any]:
        """The wire form of the payload: camelCase keys, JSON values only. An optional
        field the producer did not set is left out (not sent as null), so a field added
        to a version later does not change what older producers put on the wire."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def declared_events() -> list[type[EventData]]:
    """Every event class declared so far (import the services' ``events`` modules first),
    ordered by type and version."""
    return [_REGISTRY[key] for key in sorted(_REGISTRY)]


def event_class(event_type: str, version: int) -> type[EventData] | None:
    return _REGISTRY.get((event_type, version))
