"""Idempotency keys expire: a door through RLS that deletes every tenant's expired keys.

Stored answers may hold credentials (encrypted); after their 24 hours nothing replays
them, so they should not stay in the database either. The app sees one tenant's rows at
a time, so the purge runs as the table's owner (SECURITY DEFINER) and can do nothing
but delete rows older than 24 hours.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION platform.purge_idempotency_keys(p_limit integer)
        RETURNS integer
        LANGUAGE sql VOLATILE SECURITY DEFINER
        SET search_path = pg_catalog, platform AS $$
          WITH gone AS (
            DELETE FROM platform.idempotency_keys k
             WHERE (k.scope, k.key) IN (
               SELECT x.scope, x.key FROM platform.idempotency_keys x
                WHERE x.created_at <= now() - interval '24 hours'
                ORDER BY x.created_at
                LIMIT p_limit
                FOR UPDATE SKIP LOCKED)
            RETURNING 1)
          SELECT count(*)::integer FROM gone
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION platform.purge_idempotency_keys(integer) FROM PUBLIC")
    op.execute(
        "GRANT EXECUTE ON FUNCTION platform.purge_idempotency_keys(integer) TO pantherahive_app"
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS platform.purge_idempotency_keys(integer)")
