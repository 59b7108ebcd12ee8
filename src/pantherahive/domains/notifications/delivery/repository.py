"""The delivery worker's SQL. The claim functions (migration 0006) are the only doors that
see several tenants; everything else runs under the transaction's tenant (RLS)."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.notifications.tables import Delivery

_CLAIMS = {
    name: text(f"SELECT tenant_id, id FROM notifications.{name}(:c, :l, :s)")
    for name in ("claim_deliveries", "claim_webhook_deliveries")
}
# The same door for one tenant (the transaction's, under RLS): what the claim functions of
# migration 0006 do, restricted to the rows a tenant-scoped worker may send.
_TENANT_CLAIMS = {
    name: text(
        f"UPDATE notifications.{table} d"
        " SET next_attempt_at = now() + make_interval(secs => :s)"
        f" WHERE d.id IN (SELECT x.id FROM notifications.{table} x"
        " WHERE x.tenant_id = :tenant AND x.status = 'pending' AND x.next_attempt_at <= now()"
        f"{extra} ORDER BY x.next_attempt_at LIMIT :l FOR UPDATE SKIP LOCKED)"
        " RETURNING d.tenant_id, d.id")
    for name, table, extra in (
        ("claim_deliveries", "deliveries", " AND x.channel = ANY(CAST(:c AS text[]))"),
        ("claim_webhook_deliveries", "webhook_deliveries", ""),
    )
}





class DeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(
        self,
        function: Literal["claim_deliveries", "claim_webhook_deliveries"],
        channels: list[str],
        limit: int,
        lease_seconds: int,
        *,
        tenant_id: UUID | None = None,
    ) -> list[tuple[UUID, UUID]]:
        """Lease due work: of every tenant, or — with ``tenant_id`` (the session's tenant)
        — of that tenant only."""
        params: dict[str, Any] = {"c": channels, "l": limit, "s": lease_seconds}
        if tenant_id is None:
            rows = await self.session.execute(_CLAIMS[function], params)
        else:
            rows = await self.session.execute(_TENANT_CLAIMS[function],
                                              {**params, "tenant": tenant_id})
        return [(row.tenant_id, row.id) for row in rows]

    async def delivery_for_update(self, delivery_id: UUID) -> Delivery | None:
        stmt = select(Delivery).where(Delivery.id == delivery_id).with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()
