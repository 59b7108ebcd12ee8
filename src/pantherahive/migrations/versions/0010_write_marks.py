"""Write marks: every row a service's table gains, changes or loses sets a transaction-local
flag per schema (``pantherahive.wrote_<schema>``), so the unit of work and the consumer
runner can refuse a write that emitted no event (docs/events.md, "No write without its
event").

Why not ``pg_stat_xact_user_tables``: since PostgreSQL 15 its counters include the
backend's earlier transactions whose statistics are not flushed yet (measured on 18: a
read-only transaction right after a writing one on the same connection reported its row
for about 1 to 3 s), so on pooled connections it would refuse innocent requests. A local GUC
set by a row trigger is exact: it dies with the transaction, a rolled-back savepoint takes
its mark back, and ``SELECT … FOR UPDATE`` fires no trigger.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SCHEMAS = ("identity", "projects", "tasks", "notifications")
TRIGGER = "zz_write_mark"


def _tables() -> list[tuple[str, str]]:
    rows = op.get_bind().execute(
        text(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(:s) "
            "ORDER BY 1, 2"
        ),
        {"s": list(SCHEMAS)},
    )
    return [(row[0], row[1]) for row in rows]


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION bus.mark_write() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM set_config('pantherahive.wrote_' || TG_TABLE_SCHEMA, 'on', true);
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION bus.take_write_marks(p_schemas text[]) RETURNS text[]
        LANGUAGE plpgsql AS $$
        DECLARE
          s text;
          written text[] := '{}';
        BEGIN
          FOREACH s IN ARRAY p_schemas LOOP
            IF current_setting('pantherahive.wrote_' || s, true) = 'on' THEN
              written := written || s;
              PERFORM set_config('pantherahive.wrote_' || s, '', true);
            END IF;
          END LOOP;
          RETURN written;
        END $$
        """
    )
    op.execute("GRANT EXECUTE ON FUNCTION bus.take_write_marks(text[]) TO pantherahive_app")
    for schema, table in _tables():
        # Once the flag is on, the WHEN clause skips the call for the remaining rows.
        op.execute(
            f"CREATE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {schema}.{table} "
            f"FOR EACH ROW WHEN (current_setting('pantherahive.wrote_{schema}', true) "
            "IS DISTINCT FROM 'on') EXECUTE FUNCTION bus.mark_write()"
        )


def downgrade() -> None:
    for schema, table in _tables():
        op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON {schema}.{table}")
    op.execute("DROP FUNCTION IF EXISTS bus.take_write_marks(text[])")
    op.execute("DROP FUNCTION IF EXISTS bus.mark_write()")
