"""The events audit publishes: only the denial of a read of the trail itself, the one
``authz.denied`` every service emits through ``infra.security.authz.deny``. Audit consumes
every event type (``handlers.CONSUMERS``)."""

from __future__ import annotations

from pantherahive.infra.security.authz import AuthzDenied

__all__ = ["AuthzDenied"]
