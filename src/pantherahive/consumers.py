"""Composition root of the event bus: every service's ``handlers.CONSUMERS`` (with
notifications' consumer bound to the notifications service of the process), and the
catalogue of every event the platform publishes.

The runtime (embedded in the API process, or ``pantherahive worker``) runs exactly this
list. A service with a ``handlers.py`` adds one import and one entry below; a module that
declares events is listed in ``EVENT_MODULES``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from types import ModuleType
from typing import Any

from pantherahive import __version__
from pantherahive.core.events import EventData, declared_events
from pantherahive.domains.audit import events as audit_events
from pantherahive.domains.audit.handlers import CONSUMERS as AUDIT
from pantherahive.domains.identity import events as identity_events
from pantherahive.domains.notifications import api as notifications
from pantherahive.domains.notifications import events as notifications_events
from pantherahive.domains.projects import events as projects_events
from pantherahive.domains.projects.handlers import CONSUMERS as PROJECTS
from pantherahive.domains.tasks import events as tasks_events
from pantherahive.domains.tasks.handlers import CONSUMERS as TASKS
from pantherahive.infra.asyncapi import asyncapi_document
from pantherahive.infra.bus.broker.nats import SUBJECT_PREFIX
from pantherahive.infra.bus.consumer import ConsumerSpec
from pantherahive.infra.security import authz
from pantherahive.settings import Settings, get_settings

# The services' schemas whose rows change only together with an event (infra.bus.guard):
# a request (unit of work) or a consumer handler that writes them without emitting is
# refused. A new service adds its schema here.
ANNOUNCED_SCHEMAS = ("identity", "projects", "tasks", "notifications")
# Consumers whose writes are effects of the event itself, not state changes of their own:
# audit records it, notifications renders it for people. Every other consumer is checked.
_EFFECT_ONLY = frozenset({*(spec.name for spec in AUDIT), notifications.CONSUMER})


def all_consumers(
    notification_consumers: Sequence[ConsumerSpec] | None = None,
) -> list[ConsumerSpec]:
    """``notification_consumers``: those of the process's notifications runtime (bound to
    its service); a process without one (``pantherahive worker``) gets them bound to a
    service built from the settings."""
    if notification_consumers is None:
        notification_consumers = notifications.consumers(
            notifications.notification_service(get_settings()))
    consumers = [
        spec if spec.name in _EFFECT_ONLY
        else replace(spec, announced_schemas=frozenset(ANNOUNCED_SCHEMAS))
        for spec in (*AUDIT, *notification_consumers, *PROJECTS, *TASKS)
    ]
    names = [spec.name for spec in consumers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise RuntimeError(f"consumer names must be unique: {duplicates}")
    return consumers


# Every module that declares the platform's events: importing them registers their
# classes (core.events). A service that publishes lists its ``events`` module here.
EVENT_MODULES: tuple[ModuleType, ...] = (
    audit_events,
    identity_events,
    notifications_events,
    projects_events,
    tasks_events,
    authz,
)


def published_events() -> list[type[EventData]]:
    """The classes the platform's modules declare, by type and version (classes declared
    elsewhere, such as tests', are not part of the contract)."""
    modules = {module.__name__ for module in EVENT_MODULES}
    return [cls for cls in declared_events() if cls.__module__ in modules]


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI document of ``published_events()`` (``docs/asyncapi.yaml``, served at
    ``/asyncapi.json``), with the default stream name: the same on every installation."""
    return asyncapi_document(
        published_events(),
        version=__version__,
        subject_prefix=SUBJECT_PREFIX,
        topic=str(Settings.model_fields["bus_stream"].default),
    )
