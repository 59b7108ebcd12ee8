"""The events audit publishes: only the denial of a read of the trail itself. Audit
consumes every event type (``handlers.CONSUMERS``)."""

from __future__ import annotations

AUTHZ_DENIED = "authz.denied"
