"""Composition root of the event consumers: every service's ``handlers.CONSUMERS``.

The runtime (embedded in the API process, or ``pantherahive worker``) runs exactly this
list. A service with a ``handlers.py`` adds one import and one entry below.
"""

from __future__ import annotations

from pantherahive.domains.audit.handlers import CONSUMERS as AUDIT
from pantherahive.domains.notifications.handlers import CONSUMERS as NOTIFICATIONS
from pantherahive.domains.projects.handlers import CONSUMERS as PROJECTS
from pantherahive.domains.tasks.handlers import CONSUMERS as TASKS
from pantherahive.infra.bus.consumer import ConsumerSpec


def all_consumers() -> list[ConsumerSpec]:
    consumers = [*AUDIT, *NOTIFICATIONS, *PROJECTS, *TASKS]
    names = [spec.name for spec in consumers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise RuntimeError(f"consumer names must be unique: {duplicates}")
    return consumers
