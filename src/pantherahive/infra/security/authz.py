"""The one way a service refuses an authenticated caller: :func:`deny`.

A denial is a security event: it writes ``authz.denied`` to the outbox in the request's
transaction and returns a :class:`Forbidden` whose ``commit`` keeps that event although
the request fails. Raising ``Forbidden`` directly would leave no trace in the audit trail,
so services never do (a test scans the services for it).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.errors import Forbidden
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.security.principal import AuthContext

AUTHZ_DENIED = "authz.denied"


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
        AUTHZ_DENIED,
        subject_type=subject_type,
        subject_id=subject_id,
        data={"action": action, "role": auth.role.value, **(data or {})},
        tenant_id=auth.tenant_id,
        actor_id=auth.user_id,
    )
    return Forbidden(detail or f"Your role may not perform {action}.")
