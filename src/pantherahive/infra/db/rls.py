"""Row-level security as the migrations declare it: every tenant table gets the same policy.

The migrations call these helpers, so what they emit is part of the schema's history: the
SQL must never change (a new kind of policy is a new helper, not an edited one).
"""

from __future__ import annotations

from alembic import op

TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
"""The tenant of the transaction (``SET LOCAL app.tenant_id``); NULL when none is set."""


def tenant_policy(table: str, column: str = "tenant_id") -> None:
    """Turn RLS on for ``table``: rows are visible and writable only where ``column`` is the
    transaction's tenant."""
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} "
        f"USING ({column} = {TENANT}) WITH CHECK ({column} = {TENANT})"
    )


def force_rls(table: str) -> None:
    """Make the policies bind the table's owner too (every tenant table since 0015: a
    connection that is the owner sees one tenant like any other, unless it bypasses RLS —
    a superuser or ``BYPASSRLS``, which the migrating owner must be). A new tenant table
    calls :func:`tenant_policy` and then this."""
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
