"""Stream tickets, and whether a stream's holder may still listen.

A browser's EventSource cannot send an Authorization header and tokens never go in URLs:
it trades its access token for a single-use, 60-second ticket first. A stream lasts no
longer than the access token that opened it (``still_valid``, re-checked by the runtime's
guard every heartbeat interval).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.clock import now
from pantherahive.core.errors import Unauthenticated
from pantherahive.domains.identity.api import AuthContext, token_versions
from pantherahive.domains.notifications import events
from pantherahive.domains.notifications.realtime.hub import StreamPrincipal
from pantherahive.domains.notifications.realtime.repository import TicketRepository
from pantherahive.domains.notifications.realtime.schemas import StreamTicketRead
from pantherahive.domains.notifications.tables import StreamTicket
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.db.engine import set_tenant
from pantherahive.infra.security.tokens import new_opaque_token, parse_opaque_token

TICKET_PREFIX = "nst"
TICKET_TTL = timedelta(seconds=60)


class TicketService:
    async def issue_ticket(self, session: AsyncSession, auth: AuthContext, *,
                           token_version: int, token_expires_at: datetime) -> StreamTicketRead:
        ticket, digest = new_opaque_token(TICKET_PREFIX, auth.tenant_id)
        await TicketRepository(session).add(StreamTicket(
            ticket_hash=digest, tenant_id=auth.tenant_id, user_id=auth.user_id,
            expires_at=now() + TICKET_TTL, used_at=None, token_version=token_version,
            token_expires_at=token_expires_at))
        # A credential was issued: audited like a login (the ticket itself never is).
        await emit(session, events.StreamTicketIssued(expires_in=int(TICKET_TTL.total_seconds())),
                   subject_id=auth.user_id)
        return StreamTicketRead(ticket=ticket, expires_in=int(TICKET_TTL.total_seconds()))

    async def redeem_ticket(self, session: AsyncSession, ticket: str) -> StreamPrincipal:
        """The holder of a valid, unused ticket — which is deleted by this call (spent
        tickets leave no row behind; the worker purges expired ones)."""
        parsed = parse_opaque_token(TICKET_PREFIX, ticket)
        if parsed is None:
            raise Unauthenticated("The stream ticket is not valid.")
        tenant_id, digest = parsed
        await set_tenant(session, tenant_id)
        spent = await TicketRepository(session).consume_ticket(digest, now())
        if spent is None:
            raise Unauthenticated("The stream ticket is not valid, expired or used.")
        principal = StreamPrincipal(tenant_id, *spent)
        if not await self.still_valid(session, [principal]):
            raise Unauthenticated("The stream ticket is not valid, expired or used.")
        return principal

    async def still_valid(self, session: AsyncSession,
                          principals: list[StreamPrincipal]) -> list[StreamPrincipal]:
        """Those whose access token would still work now: not expired, the user ACTIVE and
        the token's version current. All of one tenant (the session's)."""
        at = now()
        live = [p for p in principals if p.expires_at > at]
        versions = await token_versions(session, {p.user_id for p in live})
        return [p for p in live if versions.get(p.user_id) == p.token_version]

    async def purge_tickets(self, session: AsyncSession) -> int:
        return await TicketRepository(session).purge_tickets(limit=1000)
