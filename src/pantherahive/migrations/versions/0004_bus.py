"""Event backbone: outbox wake-ups, safe read horizon, consumer offsets, processed markers,
dead letters, and the SECURITY DEFINER doors the runtime reads the outbox through.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from pantherahive.infra.db.rls import tenant_policy

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


# Rows are read in (xid, position) order and only below the oldest transaction still
# running (pg_snapshot_xmin): a row that commits later always has an xid at or above that
# horizon, so a reader never moves past a row it has not seen yet (docs/events.md).


def upgrade() -> None:
    op.execute(
        "ALTER TABLE bus.outbox ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id()"
    )
    op.execute("CREATE INDEX ix_outbox_xid_position ON bus.outbox (xid, position)")

    # NOTIFY is transactional: listeners are woken at commit, and only for committed rows.
    op.execute(
        """
        CREATE FUNCTION bus.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM pg_notify('pantherahive_outbox', '');
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON bus.outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION bus.notify_outbox()"
    )

    op.execute(
        """
        CREATE TABLE bus.consumer_offsets (
          consumer varchar(100) NOT NULL,
          last_xid xid8 NOT NULL DEFAULT '0'::xid8,
          last_position bigint NOT NULL DEFAULT 0,
          updated_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT pk_consumer_offsets PRIMARY KEY (consumer)
        )
        """
    )
    op.execute("GRANT SELECT, INSERT, UPDATE ON bus.consumer_offsets TO pantherahive_app")

    op.execute(
        """
        CREATE TABLE bus.processed_events (
          consumer varchar(100) NOT NULL,
          event_id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          processed_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT pk_processed_events PRIMARY KEY (consumer, event_id)
        )
        """
    )
    op.execute("CREATE INDEX ix_processed_events_at ON bus.processed_events (processed_at)")

    op.execute(
        """
        CREATE TABLE bus.dead_letters (
          id bigint GENERATED ALWAYS AS IDENTITY,
          consumer varchar(100) NOT NULL,
          event_id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          event_type varchar(100) NOT NULL,
          position bigint,
          event jsonb NOT NULL,
          error text NOT NULL,
          attempts integer NOT NULL,
          parked_at timestamptz NOT NULL DEFAULT now(),
          replayed_at timestamptz,
          CONSTRAINT pk_dead_letters PRIMARY KEY (id),
          CONSTRAINT uq_dead_letters_consumer_event UNIQUE (consumer, event_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_dead_letters_parked ON bus.dead_letters (consumer, id) "
        "WHERE replayed_at IS NULL"
    )
    for table in ("bus.processed_events", "bus.dead_letters"):
        tenant_policy(table)
    op.execute("GRANT SELECT, INSERT ON bus.processed_events TO pantherahive_app")
    op.execute("GRANT SELECT, INSERT, UPDATE ON bus.dead_letters TO pantherahive_app")

    # Doors through RLS for the runtime and the relay (they serve every tenant).
    op.execute(
        """
        CREATE FUNCTION bus.read_outbox(p_after_xid xid8, p_after_position bigint, p_max integer)
        RETURNS SETOF bus.outbox
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, bus AS $$
          SELECT o.* FROM bus.outbox o
          WHERE (o.xid, o.position) > (p_after_xid, p_after_position)
            AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY o.xid, o.position
          LIMIT p_max
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION bus.outbox_pending(p_after_xid xid8, p_after_position bigint)
        RETURNS bigint
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, bus AS $$
          SELECT count(*) FROM (
            SELECT 1 FROM bus.outbox o
            WHERE (o.xid, o.position) > (p_after_xid, p_after_position)
            LIMIT 100000
          ) AS pending
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION bus.read_unpublished(p_max integer)
        RETURNS SETOF bus.outbox
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, bus AS $$
          SELECT o.* FROM bus.outbox o WHERE o.published_at IS NULL
          ORDER BY o.position LIMIT p_max
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION bus.mark_published(p_positions bigint[])
        RETURNS integer
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, bus AS $$
          WITH marked AS (
            UPDATE bus.outbox SET published_at = now()
            WHERE position = ANY(p_positions) AND published_at IS NULL
            RETURNING 1
          )
          SELECT count(*)::integer FROM marked
        $$
        """
    )
    for fn in (
        "read_outbox(xid8, bigint, integer)",
        "outbox_pending(xid8, bigint)",
        "read_unpublished(integer)",
        "mark_published(bigint[])",
    ):
        op.execute(f"REVOKE ALL ON FUNCTION bus.{fn} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION bus.{fn} TO pantherahive_app")


def downgrade() -> None:
    for fn in (
        "read_outbox(xid8, bigint, integer)",
        "outbox_pending(xid8, bigint)",
        "read_unpublished(integer)",
        "mark_published(bigint[])",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS bus.{fn}")
    op.execute("DROP TABLE IF EXISTS bus.dead_letters")
    op.execute("DROP TABLE IF EXISTS bus.processed_events")
    op.execute("DROP TABLE IF EXISTS bus.consumer_offsets")
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON bus.outbox")
    op.execute("DROP FUNCTION IF EXISTS bus.notify_outbox()")
    op.execute("DROP INDEX IF EXISTS bus.ix_outbox_xid_position")
    op.execute("ALTER TABLE bus.outbox DROP COLUMN IF EXISTS xid")
