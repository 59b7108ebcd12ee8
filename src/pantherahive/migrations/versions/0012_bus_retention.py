"""Retention of the event backbone's bookkeeping: doors to prune ``bus.outbox`` and
``bus.processed_events``, which otherwise grow for ever.

The runtime runs as the app role, which may not delete from either table (and sees one
tenant at a time), so pruning goes through two SECURITY DEFINER functions, each deleting
at most ``p_limit`` rows per call:

* ``bus.prune_outbox(before, consumers, limit)`` deletes rows that happened before
  ``before`` and that nobody needs any more: with ``consumers`` (embedded mode), rows
  every one of those consumers has passed — nothing while one of them has no position
  yet; with ``consumers`` NULL (NATS/Kafka), rows the relay has published.
* ``bus.prune_processed(before, limit)`` deletes processed markers older than ``before``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION bus.prune_outbox(p_before timestamptz, p_consumers text[],
                                         p_limit integer)
        RETURNS integer
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, bus AS $$
        DECLARE
          floor_xid xid8;
          floor_position bigint;
          known integer;
          deleted integer;
        BEGIN
          IF p_consumers IS NULL THEN
            WITH gone AS (
              DELETE FROM bus.outbox WHERE position IN (
                SELECT position FROM bus.outbox
                 WHERE published_at IS NOT NULL AND occurred_at < p_before
                 ORDER BY position LIMIT p_limit)
              RETURNING 1)
            SELECT count(*) INTO deleted FROM gone;
            RETURN deleted;
          END IF;
          SELECT count(*) INTO known FROM bus.consumer_offsets
           WHERE consumer = ANY(p_consumers);
          IF cardinality(p_consumers) = 0
             OR known < (SELECT count(DISTINCT c) FROM unnest(p_consumers) AS c) THEN
            RETURN 0;  -- a consumer without a position has passed nothing yet
          END IF;
          SELECT last_xid, last_position INTO floor_xid, floor_position
            FROM bus.consumer_offsets WHERE consumer = ANY(p_consumers)
           ORDER BY last_xid, last_position LIMIT 1;
          WITH gone AS (
            DELETE FROM bus.outbox WHERE position IN (
              SELECT position FROM bus.outbox
               WHERE (xid, position) <= (floor_xid, floor_position)
                 AND occurred_at < p_before
               ORDER BY position LIMIT p_limit)
            RETURNING 1)
          SELECT count(*) INTO deleted FROM gone;
          RETURN deleted;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION bus.prune_processed(p_before timestamptz, p_limit integer)
        RETURNS integer
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, bus AS $$
          WITH gone AS (
            DELETE FROM bus.processed_events WHERE (consumer, event_id) IN (
              SELECT consumer, event_id FROM bus.processed_events
               WHERE processed_at < p_before LIMIT p_limit)
            RETURNING 1)
          SELECT count(*)::integer FROM gone
        $$
        """
    )
    for fn in ("prune_outbox(timestamptz, text[], integer)",
               "prune_processed(timestamptz, integer)"):
        op.execute(f"REVOKE ALL ON FUNCTION bus.{fn} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION bus.{fn} TO pantherahive_app")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS bus.prune_processed(timestamptz, integer)")
    op.execute("DROP FUNCTION IF EXISTS bus.prune_outbox(timestamptz, text[], integer)")
