"""Foundation: app role, platform and bus schemas, identity schema with RLS.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from pantherahive.infra.db.rls import TENANT, tenant_policy

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

def upgrade() -> None:
    op.execute(
        """
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pantherahive_app') THEN
            CREATE ROLE pantherahive_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
          END IF;
        END $$;
        """
    )
    op.execute("GRANT pantherahive_app TO CURRENT_USER")
    for schema in ("platform", "bus", "identity"):
        op.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        op.execute(f"GRANT USAGE ON SCHEMA {schema} TO pantherahive_app")

    # platform: idempotency keys (tenant-less rows are the anonymous sign-up scope)
    op.execute(
        """
        CREATE TABLE platform.idempotency_keys (
          scope varchar(80) NOT NULL,
          key varchar(255) NOT NULL,
          tenant_id uuid,
          fingerprint bytea NOT NULL,
          status integer NOT NULL,
          payload bytea NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT pk_idempotency_keys PRIMARY KEY (scope, key)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_idempotency_keys_created_at ON platform.idempotency_keys (created_at)"
    )
    op.execute("ALTER TABLE platform.idempotency_keys ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON platform.idempotency_keys "
        f"USING (tenant_id IS NULL OR tenant_id = {TENANT}) "
        f"WITH CHECK (tenant_id IS NULL OR tenant_id = {TENANT})"
    )
    op.execute(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON platform.idempotency_keys TO pantherahive_app"
    )

    # bus: the transactional outbox
    op.execute(
        """
        CREATE TABLE bus.outbox (
          position bigint GENERATED ALWAYS AS IDENTITY,
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          type varchar(100) NOT NULL,
          version integer NOT NULL DEFAULT 1,
          occurred_at timestamptz NOT NULL,
          actor_id uuid,
          subject_type varchar(50) NOT NULL,
          subject_id varchar(100) NOT NULL,
          data jsonb NOT NULL DEFAULT '{}'::jsonb,
          request_id varchar(128),
          ip text,
          published_at timestamptz,
          CONSTRAINT pk_outbox PRIMARY KEY (position),
          CONSTRAINT uq_outbox_id UNIQUE (id)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_outbox_unpublished ON bus.outbox (position) WHERE published_at IS NULL"
    )
    op.execute("ALTER TABLE bus.outbox ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_insert ON bus.outbox FOR INSERT WITH CHECK (tenant_id = {TENANT})"
    )
    op.execute(f"CREATE POLICY tenant_read ON bus.outbox FOR SELECT USING (tenant_id = {TENANT})")
    op.execute("GRANT SELECT, INSERT ON bus.outbox TO pantherahive_app")

    # identity
    op.execute(
        """
        CREATE TABLE identity.tenants (
          id uuid NOT NULL,
          name varchar(100) NOT NULL,
          slug varchar(63) NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT pk_tenants PRIMARY KEY (id),
          CONSTRAINT uq_tenants_slug UNIQUE (slug)
        )
        """
    )
    tenant_policy("identity.tenants", "id")
    op.execute(
        """
        CREATE TABLE identity.users (
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          username varchar(50) NOT NULL,
          email varchar(254),
          first_name varchar(100),
          last_name varchar(100),
          role varchar(10) NOT NULL,
          status varchar(24) NOT NULL,
          password_hash text NOT NULL,
          token_version integer NOT NULL DEFAULT 0,
          email_verified_at timestamptz,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT pk_users PRIMARY KEY (id),
          CONSTRAINT fk_users_tenant_id_tenants FOREIGN KEY (tenant_id)
            REFERENCES identity.tenants (id),
          CONSTRAINT ck_users_role CHECK (role IN ('ADMIN', 'MANAGER', 'MEMBER')),
          CONSTRAINT ck_users_status
            CHECK (status IN ('ACTIVE', 'INACTIVE', 'PENDING_VERIFICATION'))
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_users_username ON identity.users (tenant_id, lower(username))"
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_users_email ON identity.users (tenant_id, lower(email)) "
        "WHERE email IS NOT NULL"
    )
    op.execute("CREATE INDEX ix_users_listing ON identity.users (tenant_id, created_at, id)")
    op.execute(
        "CREATE INDEX ix_users_admins ON identity.users (tenant_id) "
        "WHERE role = 'ADMIN' AND status = 'ACTIVE'"
    )
    tenant_policy("identity.users")

    op.execute(
        """
        CREATE TABLE identity.refresh_tokens (
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          user_id uuid NOT NULL,
          family_id uuid NOT NULL,
          token_hash bytea NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          expires_at timestamptz NOT NULL,
          used_at timestamptz,
          revoked_at timestamptz,
          CONSTRAINT pk_refresh_tokens PRIMARY KEY (id),
          CONSTRAINT uq_refresh_tokens_token_hash UNIQUE (token_hash),
          CONSTRAINT fk_refresh_tokens_user_id_users FOREIGN KEY (user_id)
            REFERENCES identity.users (id)
        )
        """
    )
    op.execute("CREATE INDEX ix_refresh_tokens_family ON identity.refresh_tokens (family_id)")
    op.execute("CREATE INDEX ix_refresh_tokens_user ON identity.refresh_tokens (user_id)")
    tenant_policy("identity.refresh_tokens")

    op.execute(
        """
        CREATE TABLE identity.action_tokens (
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          user_id uuid NOT NULL,
          purpose varchar(20) NOT NULL,
          token_hash bytea NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          expires_at timestamptz NOT NULL,
          used_at timestamptz,
          CONSTRAINT pk_action_tokens PRIMARY KEY (id),
          CONSTRAINT uq_action_tokens_token_hash UNIQUE (token_hash),
          CONSTRAINT fk_action_tokens_user_id_users FOREIGN KEY (user_id)
            REFERENCES identity.users (id),
          CONSTRAINT ck_action_tokens_purpose
            CHECK (purpose IN ('verify_email', 'password_reset'))
        )
        """
    )
    op.execute("CREATE INDEX ix_action_tokens_user ON identity.action_tokens (user_id, purpose)")
    tenant_policy("identity.action_tokens")

    op.execute(
        "GRANT SELECT, INSERT, UPDATE ON identity.tenants, identity.users, "
        "identity.refresh_tokens, identity.action_tokens TO pantherahive_app"
    )

    # Two narrow doors through RLS, owned by the schema owner (SECURITY DEFINER):
    # a login names its tenant by slug before any tenant is in scope, and every
    # authenticated request checks its principal and enters the tenant in one round trip.
    op.execute(
        """
        CREATE FUNCTION identity.tenant_id_for_slug(p_slug text) RETURNS uuid
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, identity AS $$
          SELECT id FROM identity.tenants WHERE slug = p_slug
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION identity.authenticate(p_tenant uuid, p_user uuid)
        RETURNS TABLE (role varchar, status varchar, token_version integer)
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, identity AS $$
        BEGIN
          PERFORM set_config('app.tenant_id', p_tenant::text, true);
          RETURN QUERY SELECT u.role, u.status, u.token_version
            FROM identity.users u WHERE u.id = p_user AND u.tenant_id = p_tenant;
        END $$
        """
    )
    for fn in ("tenant_id_for_slug(text)", "authenticate(uuid, uuid)"):
        op.execute(f"REVOKE ALL ON FUNCTION identity.{fn} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION identity.{fn} TO pantherahive_app")


def downgrade() -> None:
    for schema in ("identity", "bus", "platform"):
        op.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
