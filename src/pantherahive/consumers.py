"""Composition root of the event consumers: every service's ``handlers.CONSUMERS``, and
notifications' consumer bound to the notifications service of the process.

The runtime (embedded in the API process, or ``pantherahive worker``) runs exactly this
list. A service with a ``handlers.py`` adds one import and one entry below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pantherahive.domains.audit.handlers import CONSUMERS as AUDIT
from pantherahive.domains.notifications import api as notifications
from pantherahive.domains.projects.handlers import CONSUMERS as PROJECTS
from pantherahive.domains.tasks.handlers import CONSUMERS as TASKS
from pantherahive.infra.bus.consumer import ConsumerSpec
from pantherahive.settings import get_settings

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
