"""Composition root of the event consumers: every service's ``handlers.CONSUMERS``.

The runtime (embedded in the API process, or ``pantherahive worker``) runs exactly this
list. A service with a ``handlers.py`` adds one import and one entry below.
"""

from __future__ import annotations

from dataclasses import replace

from pantherahive.domains.audit.handlers import CONSUMERS as AUDIT
from pantherahive.domains.notifications.handlers import CONSUMERS as NOTIFICATIONS
from pantherahive.domains.projects.handlers import CONSUMERS as PROJECTS
from pantherahive.domains.tasks.handlers import CONSUMERS as TASKS
from pantherahive.infra.bus.consumer import ConsumerSpec

# The services' schemas whose rows change only together with an event (infra.bus.guard):
# a request (unit of work) or a consumer handler that writes them without emitting is
# refused. A new service adds its schema here.
ANNOUNCED_SCHEMAS = ("identity", "projects", "tasks", "notifications")
# Consumers whose writes are effects of the event itself, not state changes of their own:
# audit records it, notifications renders it for people. Every other consumer is checked.
_EFFECT_ONLY = frozenset(spec.name for spec in (*AUDIT, *NOTIFICATIONS))


def all_consumers() -> list[ConsumerSpec]:
    consumers = [
        spec if spec.name in _EFFECT_ONLY
        else replace(spec, announced_schemas=frozenset(ANNOUNCED_SCHEMAS))
        for spec in (*AUDIT, *NOTIFICATIONS, *PROJECTS, *TASKS)
    ]
    names = [spec.name for spec in consumers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise RuntimeError(f"consumer names must be unique: {duplicates}")
    return consumers
