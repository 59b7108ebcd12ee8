"""What projects does when other services' events arrive."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.projects.service import drop_memberships_of
from pantherahive.infra.bus.consumer import ConsumerSpec, Event

USER_DEACTIVATED = "user.deactivated"  # identity's event (its public contract)


async def on_user_deactivated(session: AsyncSession, event: Event) -> None:
    """The user leaves the projects they are a member of (not those they own). Idempotent:
    a redelivery finds no membership left and emits nothing."""
    await drop_memberships_of(
        session,
        user_id=UUID(event.subject_id),
        tenant_id=event.tenant_id,
        actor_id=event.actor_id,
    )


CONSUMERS = [
    ConsumerSpec(
        name="projects.memberships",
        handler=on_user_deactivated,
        types=frozenset({USER_DEACTIVATED}),
    ),
]
