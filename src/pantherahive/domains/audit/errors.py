"""Audit's domain errors."""

from __future__ import annotations

from pantherahive.core.errors import NotFound


class AuditEventNotFound(NotFound):
    slug = "audit-event-not-found"

    def __init__(self) -> None:
        super().__init__("No such audit event.")
