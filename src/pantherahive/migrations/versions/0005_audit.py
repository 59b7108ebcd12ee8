"""Audit: append-only, hash-chained audit events per tenant, archive manifests, restores.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from pantherahive.infra.db.rls import tenant_policy

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS audit")
    op.execute("GRANT USAGE ON SCHEMA audit TO pantherahive_app")

    # One row per tenant: the head of its chain. The consumer locks it (upsert) for every
    # event, which serialises appends per tenant and makes seq gap-free.
    op.execute(
        """
        CREATE TABLE audit.chains (
          tenant_id uuid NOT NULL,
          last_seq bigint NOT NULL,
          last_hash char(64) NOT NULL,
          CONSTRAINT pk_chains PRIMARY KEY (tenant_id)
        )
        """
    )
    tenant_policy("audit.chains")
    op.execute("GRANT SELECT, INSERT, UPDATE ON audit.chains TO pantherahive_app")

    op.execute(
        """
        CREATE TABLE audit.audit_events (
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          seq bigint NOT NULL,
          occurred_at timestamptz NOT NULL,
          actor_id uuid,
          actor_type varchar(10) NOT NULL,
          action varchar(100) NOT NULL,
          resource_type varchar(50) NOT NULL,
          resource_id varchar(100) NOT NULL,
          request_id varchar(128),
          ip text,
          changes jsonb NOT NULL DEFAULT '{}'::jsonb,
          data jsonb NOT NULL DEFAULT '{}'::jsonb,
          hash char(64) NOT NULL,
          prev_hash char(64) NOT NULL,
          recorded_at timestamptz NOT NULL DEFAULT now(),
          search tsvector GENERATED ALWAYS AS (
            to_tsvector('simple'::regconfig,
              action || ' ' || translate(action, '._', '  ') || ' ' ||
              resource_type || ' ' || resource_id)
            || jsonb_to_tsvector('simple'::regconfig, changes, '["string", "numeric", "key"]')
            || jsonb_to_tsvector('simple'::regconfig, data, '["string", "numeric"]')
          ) STORED,
          CONSTRAINT pk_audit_events PRIMARY KEY (id),
          CONSTRAINT uq_audit_events_seq UNIQUE (tenant_id, seq),
          CONSTRAINT ck_audit_events_actor_type CHECK (actor_type IN ('user', 'system')),
          CONSTRAINT ck_audit_events_seq CHECK (seq > 0)
        )
        """
    )
    # Lists are newest first by (occurred_at, seq): each filter is "tenant + one column"
    # followed by (occurred_at, seq), so a filter, a from/to window and the keyset cursor
    # are one index range walked backwards, stopping after a page, at any table size.
    op.execute(
        "CREATE INDEX ix_audit_events_recent ON audit.audit_events (tenant_id, occurred_at, seq)"
    )
    op.execute(
        "CREATE INDEX ix_audit_events_actor "
        "ON audit.audit_events (tenant_id, actor_id, occurred_at, seq)"
    )
    op.execute(
        "CREATE INDEX ix_audit_events_resource "
        "ON audit.audit_events (tenant_id, resource_type, resource_id, occurred_at, seq)"
    )
    op.execute(
        "CREATE INDEX ix_audit_events_action "
        "ON audit.audit_events (tenant_id, action, occurred_at, seq)"
    )
    op.execute("CREATE INDEX ix_audit_events_search ON audit.audit_events USING gin (search)")
    tenant_policy("audit.audit_events")
    op.execute("GRANT SELECT, INSERT ON audit.audit_events TO pantherahive_app")

    # Full text under RLS: `@@` is not leakproof, so behind a row-level policy PostgreSQL
    # will not use the GIN index for it, nor filter with it while walking an ordered
    # index, and scans the whole table. This narrow door (owner's rights; the caller's
    # tenant from the same setting RLS uses) runs a full-text page without RLS, where the
    # planner may choose between the GIN index and the ordered indexes, and returns the
    # page's seqs; the caller reads those rows under RLS as usual.
    op.execute(
        """
        CREATE FUNCTION audit.search_seqs(
          p_query text, p_actor uuid, p_action text, p_resource_type text,
          p_resource_id text, p_from timestamptz, p_to timestamptz,
          p_before_at timestamptz, p_before_seq bigint, p_limit integer
        ) RETURNS SETOF bigint
        LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
        DECLARE
          tenant uuid := NULLIF(current_setting('app.tenant_id', true), '')::uuid;
          stmt text := 'SELECT seq FROM audit.audit_events WHERE tenant_id = $1 '
                       'AND search @@ websearch_to_tsquery(''simple''::regconfig, $2)';
        BEGIN
          IF tenant IS NULL THEN
            RETURN;
          END IF;
          IF p_actor IS NOT NULL THEN stmt := stmt || ' AND actor_id = $3'; END IF;
          IF p_action IS NOT NULL THEN stmt := stmt || ' AND action = $4'; END IF;
          IF p_resource_type IS NOT NULL THEN
            stmt := stmt || ' AND resource_type = $5';
          END IF;
          IF p_resource_id IS NOT NULL THEN stmt := stmt || ' AND resource_id = $6'; END IF;
          IF p_from IS NOT NULL THEN stmt := stmt || ' AND occurred_at >= $7'; END IF;
          IF p_to IS NOT NULL THEN stmt := stmt || ' AND occurred_at <= $8'; END IF;
          IF p_before_at IS NOT NULL THEN
            stmt := stmt || ' AND (occurred_at, seq) < ($9, $10)';
          END IF;
          stmt := stmt || ' ORDER BY occurred_at DESC, seq DESC';
          IF p_limit IS NOT NULL THEN stmt := stmt || ' LIMIT $11'; END IF;
          RETURN QUERY EXECUTE stmt USING tenant, p_query, p_actor, p_action, p_resource_type,
            p_resource_id, p_from, p_to, p_before_at, p_before_seq, p_limit;
        END $$
        """
    )
    signature = (
        "audit.search_seqs(text, uuid, text, text, text, timestamptz, timestamptz, "
        "timestamptz, bigint, integer)"
    )
    op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO pantherahive_app")

    # Append-only for everyone, the owner included, except the archive command, which
    # sets audit.archiving in its own transaction before deleting what it has archived.
    op.execute(
        """
        CREATE FUNCTION audit.refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'DELETE' AND current_setting('audit.archiving', true) = 'on'
             AND current_user <> 'pantherahive_app' THEN
            RETURN OLD;
          END IF;
          RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE "
        "ON audit.audit_events FOR EACH ROW EXECUTE FUNCTION audit.refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE "
        "ON audit.audit_events FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change()"
    )

    op.execute(
        """
        CREATE TABLE audit.archive_segments (
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          first_seq bigint NOT NULL,
          last_seq bigint NOT NULL,
          first_prev_hash char(64) NOT NULL,
          first_hash char(64) NOT NULL,
          last_hash char(64) NOT NULL,
          count integer NOT NULL,
          first_occurred_at timestamptz NOT NULL,
          last_occurred_at timestamptz NOT NULL,
          sha256 char(64) NOT NULL,
          bytes bigint NOT NULL,
          path text NOT NULL,
          manifest_path text NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT pk_archive_segments PRIMARY KEY (id),
          CONSTRAINT uq_archive_segments_first_seq UNIQUE (tenant_id, first_seq),
          CONSTRAINT ck_archive_segments_range CHECK (last_seq >= first_seq)
        )
        """
    )
    tenant_policy("audit.archive_segments")
    op.execute("GRANT SELECT ON audit.archive_segments TO pantherahive_app")

    # Archived ranges brought back for an investigation; the live chain is never touched.
    op.execute(
        """
        CREATE TABLE audit.restored_events (
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          seq bigint NOT NULL,
          occurred_at timestamptz NOT NULL,
          actor_id uuid,
          actor_type varchar(10) NOT NULL,
          action varchar(100) NOT NULL,
          resource_type varchar(50) NOT NULL,
          resource_id varchar(100) NOT NULL,
          request_id varchar(128),
          ip text,
          changes jsonb NOT NULL,
          data jsonb NOT NULL,
          hash char(64) NOT NULL,
          prev_hash char(64) NOT NULL,
          segment_id uuid NOT NULL,
          restored_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT pk_restored_events PRIMARY KEY (tenant_id, seq)
        )
        """
    )
    tenant_policy("audit.restored_events")
    op.execute("GRANT SELECT ON audit.restored_events TO pantherahive_app")


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS audit CASCADE")
