"""The base of every repository of tenant-owned rows.

Row-level security already hides other tenants' rows; a repository names the tenant in
every statement as well, so the composite indexes that start with ``tenant_id`` are used
and a forgotten filter cannot become a full scan of every tenant (STYLE rule 2). The base
puts the tenant where no call site can forget it:

- fixed SQL run through :meth:`fetch` / :meth:`fetchrow` / :meth:`fetchval` /
  :meth:`execute` always receives the tenant as ``$1`` (a statement's own arguments are
  ``$2``…);
- SQLAlchemy statements start from :meth:`select` / :meth:`update` / :meth:`delete`,
  which already carry ``table.tenant_id = :tenant``.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import Delete, Select, Update, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.infra.context import current_context
from pantherahive.infra.db import direct
from pantherahive.infra.db.direct import Record


class TenantRepository:
    def __init__(self, session: AsyncSession, tenant_id: UUID | None = None) -> None:
        """``tenant_id`` defaults to the tenant of the request (or event) in scope."""
        tenant = tenant_id if tenant_id is not None else current_context().tenant_id
        if tenant is None:
            raise RuntimeError(f"{type(self).__name__} needs a tenant in scope")
        self.session = session
        self.tenant_id = tenant

    # ---- fixed SQL: $1 is the tenant ------------------------------------------------------
    async def fetch(self, sql: str, *args: Any) -> list[Record]:
        return await direct.fetch(self.session, sql, self.tenant_id, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Record | None:
        return await direct.fetchrow(self.session, sql, self.tenant_id, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await direct.fetchval(self.session, sql, self.tenant_id, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        return await direct.execute(self.session, sql, self.tenant_id, *args)

    # ---- SQLAlchemy statements that start with the tenant filter ----------------------------
    def select(self, table: Any, *columns: Any) -> Select[Any]:
        """``SELECT columns (default: the entity) FROM table WHERE tenant_id = :tenant``."""
        return select(*(columns or (table,))).where(table.tenant_id == self.tenant_id)

    def update(self, table: Any) -> Update:
        return update(table).where(table.tenant_id == self.tenant_id)

    def delete(self, table: Any) -> Delete:
        return delete(table).where(table.tenant_id == self.tenant_id)
