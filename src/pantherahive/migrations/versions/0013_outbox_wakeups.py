"""Cheaper outbox reading for the embedded runtime: wake-ups that say which event types
committed, and a bounded, type-aware count of committed events.

* ``bus.notify_outbox`` (the statement trigger of migration 0004) now sends the distinct
  event types the statement inserted as the NOTIFY payload (comma-separated; empty when
  unknown or too long, which means "wake everyone"). The runtime wakes only the consumers
  that want one of them: a consumer that wants a few types no longer reads the outbox at
  every write of the platform.
* ``bus.outbox_committed(after_xid, after_position, types, cap)`` counts the committed
  rows after a position (of the given types; every type when NULL), at most ``cap``. Read
  together with ``bus.read_outbox`` in one statement it tells whether committed events
  wait above the safe horizon, at a cost bounded by the batch size.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE FUNCTION bus.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
          kinds text;
          odd boolean;
        BEGIN
          SELECT string_agg(DISTINCT type, ','), bool_or(strpos(type, ',') > 0)
            INTO kinds, odd FROM inserted;
          IF kinds IS NULL OR odd OR octet_length(kinds) > 7000 THEN
            kinds := '';
          END IF;
          PERFORM pg_notify('pantherahive_outbox', kinds);
          RETURN NULL;
        END $$
        """
    )
    op.execute("DROP TRIGGER outbox_notify ON bus.outbox")
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON bus.outbox "
        "REFERENCING NEW TABLE AS inserted "
        "FOR EACH STATEMENT EXECUTE FUNCTION bus.notify_outbox()"
    )
    op.execute(
        """
        CREATE FUNCTION bus.outbox_committed(p_after_xid xid8, p_after_position bigint,
                                             p_types text[], p_cap integer)
        RETURNS bigint
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, bus AS $$
          SELECT count(*) FROM (
            SELECT 1 FROM bus.outbox o
            WHERE (o.xid, o.position) > (p_after_xid, p_after_position)
              AND (p_types IS NULL OR o.type = ANY(p_types))
            LIMIT p_cap
          ) AS committed
        $$
        """
    )
    signature = "bus.outbox_committed(xid8, bigint, text[], integer)"
    op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO pantherahive_app")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS bus.outbox_committed(xid8, bigint, text[], integer)")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION bus.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM pg_notify('pantherahive_outbox', '');
          RETURN NULL;
        END $$
        """
    )
    op.execute("DROP TRIGGER outbox_notify ON bus.outbox")
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON bus.outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION bus.notify_outbox()"
    )
