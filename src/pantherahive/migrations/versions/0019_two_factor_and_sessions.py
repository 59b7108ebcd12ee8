"""Identity: login sessions, TOTP two-factor, recovery codes, login challenges, and the
tenant's "require 2FA" switch.

A session is a refresh-token family (``refresh_tokens.family_id`` is its id): the device's
user agent and address, when it began and was last used. Access tokens name their session
(claim ``sid``), and the per-request principal check, still one statement, refuses a token
whose session was revoked — so revoking one session ends its access tokens at once. The
families that exist already become sessions (no user agent or address known).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

from pantherahive.infra.db.rls import force_rls, tenant_policy

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

NEW_TABLES = ("sessions", "totp_credentials", "recovery_codes", "mfa_challenges")


def upgrade() -> None:
    # identity.tenants.require_2fa comes with migration 0018 (the SSO settings expose it).
    op.execute(
        """
        CREATE TABLE identity.sessions (
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          user_id uuid NOT NULL,
          user_agent varchar(400),
          ip varchar(64),
          created_at timestamptz NOT NULL DEFAULT now(),
          last_used_at timestamptz NOT NULL DEFAULT now(),
          expires_at timestamptz NOT NULL,
          revoked_at timestamptz,
          CONSTRAINT pk_sessions PRIMARY KEY (id),
          CONSTRAINT fk_sessions_user_id_users FOREIGN KEY (user_id)
            REFERENCES identity.users (id)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_sessions_user ON identity.sessions (tenant_id, user_id, created_at, id)"
        " WHERE revoked_at IS NULL"
    )
    tenant_policy("identity.sessions")
    force_rls("identity.sessions")
    # Every family becomes a session; one with no live token left is a revoked session.
    op.execute(
        """
        INSERT INTO identity.sessions
          (id, tenant_id, user_id, created_at, last_used_at, expires_at, revoked_at)
        SELECT family_id, tenant_id, user_id, min(created_at), max(created_at),
               max(expires_at),
               CASE WHEN bool_or(revoked_at IS NULL AND used_at IS NULL AND expires_at > now())
                    THEN NULL ELSE coalesce(max(revoked_at), max(expires_at)) END
          FROM identity.refresh_tokens
         GROUP BY family_id, tenant_id, user_id
        """
    )
    op.execute(
        "ALTER TABLE identity.refresh_tokens ADD CONSTRAINT fk_refresh_tokens_family_id_sessions"
        " FOREIGN KEY (family_id) REFERENCES identity.sessions (id)"
    )

    op.execute(
        """
        CREATE TABLE identity.totp_credentials (
          user_id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          secret bytea NOT NULL,
          confirmed_at timestamptz,
          last_step bigint,
          created_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT pk_totp_credentials PRIMARY KEY (user_id),
          CONSTRAINT fk_totp_credentials_user_id_users FOREIGN KEY (user_id)
            REFERENCES identity.users (id)
        )
        """
    )
    tenant_policy("identity.totp_credentials")
    force_rls("identity.totp_credentials")

    op.execute(
        """
        CREATE TABLE identity.recovery_codes (
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          user_id uuid NOT NULL,
          code_hash bytea NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          used_at timestamptz,
          CONSTRAINT pk_recovery_codes PRIMARY KEY (id),
          CONSTRAINT uq_recovery_codes_user_code UNIQUE (user_id, code_hash),
          CONSTRAINT fk_recovery_codes_user_id_users FOREIGN KEY (user_id)
            REFERENCES identity.users (id)
        )
        """
    )
    tenant_policy("identity.recovery_codes")
    force_rls("identity.recovery_codes")

    op.execute(
        """
        CREATE TABLE identity.mfa_challenges (
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          user_id uuid NOT NULL,
          purpose varchar(10) NOT NULL,
          token_hash bytea NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          expires_at timestamptz NOT NULL,
          used_at timestamptz,
          CONSTRAINT pk_mfa_challenges PRIMARY KEY (id),
          CONSTRAINT uq_mfa_challenges_token_hash UNIQUE (token_hash),
          CONSTRAINT fk_mfa_challenges_user_id_users FOREIGN KEY (user_id)
            REFERENCES identity.users (id),
          CONSTRAINT ck_mfa_challenges_purpose CHECK (purpose IN ('verify', 'enroll'))
        )
        """
    )
    op.execute("CREATE INDEX ix_mfa_challenges_user ON identity.mfa_challenges (user_id)")
    tenant_policy("identity.mfa_challenges")
    force_rls("identity.mfa_challenges")

    # Writes to these tables set identity's write mark like every other table's (0010):
    # a request that changes them without emitting an event is refused.
    for table in NEW_TABLES:
        op.execute(
            f"CREATE TRIGGER zz_write_mark AFTER INSERT OR UPDATE OR DELETE ON identity.{table}"
            " FOR EACH ROW WHEN (current_setting('pantherahive.wrote_identity', true)"
            " IS DISTINCT FROM 'on') EXECUTE FUNCTION bus.mark_write()"
        )

    op.execute(
        "GRANT SELECT, INSERT, UPDATE ON identity.sessions, identity.mfa_challenges"
        " TO pantherahive_app"
    )
    op.execute(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON identity.totp_credentials,"
        " identity.recovery_codes TO pantherahive_app"
    )

    # The principal check of every request, now with the session: the user's live role,
    # status and token version, only while the token's session is not revoked.
    op.execute(
        """
        CREATE FUNCTION identity.authenticate_session(p_tenant uuid, p_user uuid, p_session uuid)
        RETURNS TABLE (role varchar, status varchar, token_version integer)
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, identity AS $$
        BEGIN
          PERFORM set_config('app.tenant_id', p_tenant::text, true);
          RETURN QUERY SELECT u.role, u.status, u.token_version
            FROM identity.users u
            JOIN identity.sessions s
              ON s.id = p_session AND s.user_id = u.id AND s.tenant_id = u.tenant_id
             AND s.revoked_at IS NULL
           WHERE u.id = p_user AND u.tenant_id = p_tenant;
        END $$
        """
    )
    fn = "identity.authenticate_session(uuid, uuid, uuid)"
    op.execute(f"REVOKE ALL ON FUNCTION {fn} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {fn} TO pantherahive_app")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS identity.authenticate_session(uuid, uuid, uuid)")
    op.execute(
        "ALTER TABLE identity.refresh_tokens"
        " DROP CONSTRAINT IF EXISTS fk_refresh_tokens_family_id_sessions"
    )
    for table in reversed(NEW_TABLES):
        op.execute(f"DROP TABLE IF EXISTS identity.{table}")
