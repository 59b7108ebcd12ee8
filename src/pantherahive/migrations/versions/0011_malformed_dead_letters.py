"""Dead letters for messages that are not events at all.

A broker message that does not decode (not JSON, not an event document) used to be
re-delivered for ever and stall its consumer. The worker now parks its raw bytes here
with the error and acknowledges it. Such a message has no trustworthy event id, type or
tenant, so those columns become nullable; it is parked through a SECURITY DEFINER door
because the app role may only insert rows of the transaction's tenant (RLS), and a row
with no tenant is visible to the database owner only (``pantherahive dead-letters list``).
The same garbage parked twice (a redelivery) counts one more attempt on one row.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

MAX_PAYLOAD = 1024 * 1024


def upgrade() -> None:
    op.execute(
        "ALTER TABLE bus.dead_letters "
        "ALTER COLUMN event_id DROP NOT NULL, ALTER COLUMN tenant_id DROP NOT NULL, "
        "ALTER COLUMN event_type DROP NOT NULL, ALTER COLUMN event DROP NOT NULL, "
        "ADD COLUMN payload bytea, ADD COLUMN payload_sha256 char(64), "
        "ADD CONSTRAINT ck_dead_letters_event_or_payload "
        "CHECK (event IS NOT NULL OR payload IS NOT NULL)"
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_dead_letters_malformed ON bus.dead_letters "
        "(consumer, payload_sha256) WHERE event_id IS NULL"
    )
    op.execute(
        f"""
        CREATE FUNCTION bus.park_malformed(p_consumer text, p_payload bytea, p_error text)
        RETURNS bigint
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, bus AS $$
          INSERT INTO bus.dead_letters (consumer, payload, payload_sha256, error, attempts)
          VALUES (p_consumer, substring(p_payload FROM 1 FOR {MAX_PAYLOAD}),
                  encode(sha256(p_payload), 'hex'), p_error, 1)
          ON CONFLICT (consumer, payload_sha256) WHERE event_id IS NULL
          DO UPDATE SET error = EXCLUDED.error, parked_at = now(),
                        attempts = bus.dead_letters.attempts + 1
          RETURNING id
        $$
        """  # noqa: S608 - a constant, no input
    )
    op.execute("REVOKE ALL ON FUNCTION bus.park_malformed(text, bytea, text) FROM PUBLIC")
    op.execute(
        "GRANT EXECUTE ON FUNCTION bus.park_malformed(text, bytea, text) TO pantherahive_app"
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS bus.park_malformed(text, bytea, text)")
    op.execute("DROP INDEX IF EXISTS bus.uq_dead_letters_malformed")
    op.execute("DELETE FROM bus.dead_letters WHERE event IS NULL")
    op.execute(
        "ALTER TABLE bus.dead_letters "
        "DROP CONSTRAINT IF EXISTS ck_dead_letters_event_or_payload, "
        "DROP COLUMN IF EXISTS payload_sha256, DROP COLUMN IF EXISTS payload, "
        "ALTER COLUMN event SET NOT NULL, ALTER COLUMN event_type SET NOT NULL, "
        "ALTER COLUMN tenant_id SET NOT NULL, ALTER COLUMN event_id SET NOT NULL"
    )
