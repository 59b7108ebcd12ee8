"""Stream tickets' SQL. Redeeming runs under the ticket's tenant (RLS); the purge function
(migration 0008) is the one door that sees every tenant."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.notifications.tables import StreamTicket

_PURGE_TICKETS = text("SELECT notifications.purge_stream_tickets(:limit)")


class TicketRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, ticket: StreamTicket) -> None:
        self.session.add(ticket)
        await self.session.flush()

    async def consume_ticket(self, ticket_hash: bytes,
                             at: datetime) -> tuple[UUID, int, datetime] | None:
        """Delete an unexpired ticket: (user, token version, token expiry), else None."""
        stmt = (
            delete(StreamTicket)
            .where(StreamTicket.ticket_hash == ticket_hash, StreamTicket.used_at.is_(None),
                   StreamTicket.expires_at > at)
            .returning(StreamTicket.user_id, StreamTicket.token_version,
                       StreamTicket.token_expires_at)
        )
        row = (await self.session.execute(stmt)).first()
        return None if row is None else (row.user_id, row.token_version, row.token_expires_at)

    async def purge_tickets(self, *, limit: int) -> int:
        """Delete expired (and legacy used) tickets of every tenant, at most ``limit``."""
        return int(await self.session.scalar(_PURGE_TICKETS, {"limit": limit}) or 0)
