"""Audit's public face. No service imports audit (it only consumes events); this is what
the composition root (``main.py``, ``consumers.py``, the command line) wires."""

from __future__ import annotations

from pantherahive.domains.audit.archive import ArchiveConfig, ArchiveStore
from pantherahive.domains.audit.handlers import CONSUMERS
from pantherahive.domains.audit.service import AuditService, read_snapshot

__all__ = ["CONSUMERS", "ArchiveConfig", "ArchiveStore", "AuditService", "read_snapshot"]
