"""What projects does when other services' events arrive."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.identity.events import UserDeactivated
from pantherahive.domains.projects.service import drop_memberships_of
from pantherahive.infra.bus.consumer import Event, on, subscribe


async def on_user_deactivated(session: AsyncSession, event: Event, _data: UserDeactivated) -> None:
    """The user leaves the projects they are a member of (not those they own). Idempotent:
    a redelivery finds no membership left and emits nothing."""
    await drop_memberships_of(
        session,
        user_id=UUID(event.subject_id),
        tenant_id=event.tenant_id,
        actor_id=event.actor_id,
    )


CONSUMERS = [subscribe("projects.memberships", on(UserDeactivated, on_user_deactivated))]
