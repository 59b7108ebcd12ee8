"""The one way a service refuses an authenticated caller: :func:`deny`.

A denial is a security event: it writes ``authz.denied`` to the outbox in the request's
transaction and returns a :class:`Forbidden` whose ``commit`` keeps that event although
the request fails. Raising ``Forbidden`` directly would leave no trace in the audit trail,
so services never do (a test scans the services for it).
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.errors import Forbidden
from pantherahive.core.events import ANY_SUBJECT, EventData
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.security.principal import AuthContext


class AuthzDenied(EventData, type="authz.denied", subject=ANY_SUBJECT):
    """An authenticated caller was refused an action on something it can see (403). The
    subject is what was refused; services may add context (``projectRole``…)."""

    model_config = ConfigDict(extra="allow")

    action: str
    role: str


async def deny(
    session: AsyncSession,
    auth: AuthContext,
    action: str,
    *,
    subject_type: str,
    subject_id: object,
    detail: str | None = None,
    data: dict[str, Any] | None = None,
) -> Forbidden:
    """Record that ``auth`` may not ``action`` the subject, and return the error to raise:
    ``raise await deny(...)``."""
    await emit(
        session,
        AuthzDenied(action=action, role=auth.role.value, **(data or {})),
        subject_type=subject_type,
        subject_id=subject_id,
        tenant_id=auth.tenant_id,
        actor_id=auth.user_id,
    )
    return Forbidden(detail or f"Your role may not perform {action}.")
