"""OIDC single sign-on per tenant: the tenant's SSO settings (client secret encrypted),
the short-lived server-side state of each sign-in, the link of a user to an issuer's
subject (made at the first sign-in), and the tenant's ``require_2fa`` flag.

``require_2fa`` is enforced at login by the two-factor work (migration 0019), which
relies on this migration for the column.

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

from pantherahive.infra.db.rls import force_rls, tenant_policy

revision = "0018"
down_revision = "0016"
branch_labels = None
depends_on = None

_WRITE_MARK = (
    "CREATE TRIGGER zz_write_mark AFTER INSERT OR UPDATE OR DELETE ON {table} "
    "FOR EACH ROW WHEN (current_setting('pantherahive.wrote_identity', true) "
    "IS DISTINCT FROM 'on') EXECUTE FUNCTION bus.mark_write()"
)


def upgrade() -> None:
    op.execute(
        "ALTER TABLE identity.tenants "
        "ADD COLUMN IF NOT EXISTS require_2fa boolean NOT NULL DEFAULT false"
    )
    op.execute(
        """
        CREATE TABLE identity.tenant_sso (
          tenant_id uuid NOT NULL,
          issuer varchar(500) NOT NULL,
          client_id varchar(255) NOT NULL,
          client_secret_enc bytea NOT NULL,
          enabled boolean NOT NULL,
          jit_provisioning boolean NOT NULL,
          app_redirect_url varchar(2000),
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT pk_tenant_sso PRIMARY KEY (tenant_id),
          CONSTRAINT fk_tenant_sso_tenant_id_tenants FOREIGN KEY (tenant_id)
            REFERENCES identity.tenants (id)
        )
        """
    )
    tenant_policy("identity.tenant_sso")
    force_rls("identity.tenant_sso")
    op.execute(
        """
        CREATE TABLE identity.oidc_login_states (
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          state_hash bytea NOT NULL,
          browser_hash bytea NOT NULL,
          nonce varchar(100) NOT NULL,
          code_verifier varchar(128) NOT NULL,
          issuer varchar(500) NOT NULL,
          client_id varchar(255) NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          expires_at timestamptz NOT NULL,
          used_at timestamptz,
          CONSTRAINT pk_oidc_login_states PRIMARY KEY (id),
          CONSTRAINT uq_oidc_login_states_state_hash UNIQUE (state_hash),
          CONSTRAINT fk_oidc_login_states_tenant_id_tenants FOREIGN KEY (tenant_id)
            REFERENCES identity.tenants (id)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_oidc_login_states_expires ON identity.oidc_login_states "
        "(tenant_id, expires_at)"
    )
    tenant_policy("identity.oidc_login_states")
    force_rls("identity.oidc_login_states")
    op.execute(
        """
        CREATE TABLE identity.sso_links (
          tenant_id uuid NOT NULL,
          issuer varchar(500) NOT NULL,
          subject varchar(255) NOT NULL,
          user_id uuid NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT pk_sso_links PRIMARY KEY (tenant_id, issuer, subject),
          CONSTRAINT uq_sso_links_user UNIQUE (tenant_id, user_id, issuer),
          CONSTRAINT fk_sso_links_user_id_users FOREIGN KEY (user_id)
            REFERENCES identity.users (id)
        )
        """
    )
    tenant_policy("identity.sso_links")
    force_rls("identity.sso_links")
    op.execute(
        "GRANT SELECT, INSERT, UPDATE ON identity.tenant_sso, identity.sso_links "
        "TO pantherahive_app"
    )
    op.execute(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON identity.oidc_login_states "
        "TO pantherahive_app"
    )
    for table in ("identity.tenant_sso", "identity.oidc_login_states", "identity.sso_links"):
        op.execute(_WRITE_MARK.format(table=table))


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS identity.sso_links")
    op.execute("DROP TABLE IF EXISTS identity.oidc_login_states")
    op.execute("DROP TABLE IF EXISTS identity.tenant_sso")
    op.execute("ALTER TABLE identity.tenants DROP COLUMN IF EXISTS require_2fa")
