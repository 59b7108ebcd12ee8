"""Notification streams: a stream ticket remembers the access token that asked for it
(its version and expiry, so a stream opened with the ticket ends when that token would
stop working), and spent tickets are purged.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE notifications.stream_tickets "
        "ADD COLUMN token_version integer NOT NULL DEFAULT 0, "
        "ADD COLUMN token_expires_at timestamptz NOT NULL DEFAULT now()"
    )
    op.execute(
        "CREATE INDEX ix_stream_tickets_expires ON notifications.stream_tickets (expires_at)"
    )
    # The worker purges expired tickets of every tenant: like the claim functions of 0006,
    # a SECURITY DEFINER door that does one thing and returns only a count.
    op.execute(
        """
        CREATE FUNCTION notifications.purge_stream_tickets(p_limit integer)
        RETURNS integer
        LANGUAGE sql VOLATILE SECURITY DEFINER
        SET search_path = pg_catalog, notifications AS $$
          WITH gone AS (
            DELETE FROM notifications.stream_tickets
             WHERE ticket_hash IN (
               SELECT ticket_hash FROM notifications.stream_tickets
                WHERE expires_at <= now() OR used_at IS NOT NULL
                LIMIT p_limit)
            RETURNING 1)
          SELECT count(*)::integer FROM gone
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION notifications.purge_stream_tickets(integer) FROM PUBLIC")
    op.execute(
        "GRANT EXECUTE ON FUNCTION notifications.purge_stream_tickets(integer) "
        "TO pantherahive_app"
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS notifications.purge_stream_tickets(integer)")
    op.execute("DROP INDEX IF EXISTS notifications.ix_stream_tickets_expires")
    op.execute(
        "ALTER TABLE notifications.stream_tickets "
        "DROP COLUMN IF EXISTS token_version, DROP COLUMN IF EXISTS token_expires_at"
    )
