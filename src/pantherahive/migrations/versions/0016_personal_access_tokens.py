"""Personal access tokens: long-lived, scoped bearer tokens for scripts and integrations,
stored as SHA-256 hashes.

Every request made with one authenticates through ``identity.authenticate_token``, a
SECURITY DEFINER door like ``identity.authenticate`` (0001): it enters the tenant, reads the
token with its user's live role and status in one round trip, and records ``last_used_at``
at most once a minute per token. That bookkeeping is not a state change the platform
announces (no event), so the function gives back the transaction's write mark for the
identity schema (0010) as it found it, and skips a row another request is touching right
now (``SKIP LOCKED``) instead of queueing behind it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

from pantherahive.infra.db.rls import force_rls, tenant_policy

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE identity.access_tokens (
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          user_id uuid NOT NULL,
          name varchar(100) NOT NULL,
          scopes varchar(32)[] NOT NULL,
          prefix varchar(32) NOT NULL,
          token_hash bytea NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          expires_at timestamptz,
          last_used_at timestamptz,
          revoked_at timestamptz,
          CONSTRAINT pk_access_tokens PRIMARY KEY (id),
          CONSTRAINT uq_access_tokens_token_hash UNIQUE (token_hash),
          CONSTRAINT fk_access_tokens_user_id_users FOREIGN KEY (user_id)
            REFERENCES identity.users (id)
        )
        """
    )
    # The lists: a user's live tokens, and the tenant's, oldest first.
    op.execute(
        "CREATE INDEX ix_access_tokens_user ON identity.access_tokens "
        "(tenant_id, user_id, created_at, id) WHERE revoked_at IS NULL"
    )
    op.execute(
        "CREATE INDEX ix_access_tokens_tenant ON identity.access_tokens "
        "(tenant_id, created_at, id) WHERE revoked_at IS NULL"
    )
    tenant_policy("identity.access_tokens")
    force_rls("identity.access_tokens")
    op.execute("GRANT SELECT, INSERT, UPDATE ON identity.access_tokens TO pantherahive_app")
    op.execute(
        "CREATE TRIGGER zz_write_mark AFTER INSERT OR UPDATE OR DELETE "
        "ON identity.access_tokens FOR EACH ROW "
        "WHEN (current_setting('pantherahive.wrote_identity', true) IS DISTINCT FROM 'on') "
        "EXECUTE FUNCTION bus.mark_write()"
    )
    op.execute(
        """
        CREATE FUNCTION identity.authenticate_token(
          p_tenant uuid, p_hash bytea, p_now timestamptz, p_touch_before timestamptz)
        RETURNS TABLE (id uuid, user_id uuid, scopes varchar[], expires_at timestamptz,
                       revoked_at timestamptz, role varchar, status varchar)
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, identity AS $$
        DECLARE
          wrote text := current_setting('pantherahive.wrote_identity', true);
        BEGIN
          PERFORM set_config('app.tenant_id', p_tenant::text, true);
          UPDATE identity.access_tokens t SET last_used_at = p_now
           WHERE t.id = (SELECT a.id FROM identity.access_tokens a
                          WHERE a.tenant_id = p_tenant AND a.token_hash = p_hash
                            AND a.revoked_at IS NULL
                            AND (a.last_used_at IS NULL OR a.last_used_at < p_touch_before)
                          FOR UPDATE SKIP LOCKED);
          PERFORM set_config('pantherahive.wrote_identity', coalesce(wrote, ''), true);
          RETURN QUERY
            SELECT t.id, t.user_id, t.scopes, t.expires_at, t.revoked_at, u.role, u.status
              FROM identity.access_tokens t
              JOIN identity.users u ON u.id = t.user_id AND u.tenant_id = t.tenant_id
             WHERE t.tenant_id = p_tenant AND t.token_hash = p_hash;
        END $$
        """
    )
    signature = "authenticate_token(uuid, bytea, timestamptz, timestamptz)"
    op.execute(f"REVOKE ALL ON FUNCTION identity.{signature} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION identity.{signature} TO pantherahive_app")


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION IF EXISTS "
        "identity.authenticate_token(uuid, bytea, timestamptz, timestamptz)"
    )
    op.execute("DROP TABLE IF EXISTS identity.access_tokens")
