"""Least privilege: FORCE ROW LEVEL SECURITY on every tenant table, and a guard that the
app's login (``pantherahive_app``) cannot become more than its grants.

The processes now log in as ``pantherahive_app`` directly instead of logging in as the
owner and switching role (a ``RESET ROLE`` gave the owner back). FORCE makes the policies
bind the tables' owner as well; the owner that migrates must bypass RLS (superuser or
``BYPASSRLS``, checked by the migration environment), because the SECURITY DEFINER
functions run as it and serve every tenant.

The tables are found in the catalogue, not listed: every table of the platform's schemas
that has RLS enabled, and the upgrade stops if a table with a ``tenant_id`` column has not.
The role stays ``NOLOGIN`` here: a migration cannot know its password. Whoever runs the
server gives it one (the embedded PostgreSQL does it itself); docs/configuration.md,
"Database roles".

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# Opens a DO block that walks the tables of the platform's schemas: ``t.name`` in a loop
# whose WHERE clause the caller continues.
_TABLES_OF_THE_PLATFORM = """
        DO $$
        DECLARE
          SCHEMAS CONSTANT text[] :=
            ARRAY['platform', 'bus', 'identity', 'projects', 'tasks', 'audit', 'notifications'];
          t record;
        BEGIN
          FOR t IN
            SELECT c.oid::regclass AS name FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY(SCHEMAS) AND c.relkind IN ('r', 'p')
"""


def upgrade() -> None:
    op.execute(
        _TABLES_OF_THE_PLATFORM  # noqa: S608 - constants only
        + """
              AND NOT c.relrowsecurity
              AND EXISTS (SELECT 1 FROM pg_attribute a
                          WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
                            AND NOT a.attisdropped)
          LOOP
            RAISE EXCEPTION 'tenant table % has no row-level security', t.name;
          END LOOP;
          FOR t IN
            SELECT c.oid::regclass AS name FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY(SCHEMAS) AND c.relkind IN ('r', 'p') AND c.relrowsecurity
          LOOP
            EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t.name);
          END LOOP;
        END $$
        """
    )
    # The app's role must be able to do nothing but use its grants: no attribute that
    # escapes RLS or makes roles, and no membership that leads to the owner.
    op.execute(
        """
        DO $$ BEGIN
          IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pantherahive_app'
                     AND (rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb
                          OR rolreplication)) THEN
            RAISE EXCEPTION
              'pantherahive_app must be NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB';
          END IF;
          IF pg_has_role('pantherahive_app', current_user, 'MEMBER') THEN
            RAISE EXCEPTION 'pantherahive_app is a member of the owner %: revoke it',
              current_user;
          END IF;
        END $$
        """
    )


def downgrade() -> None:
    op.execute(
        _TABLES_OF_THE_PLATFORM
        + """
              AND c.relforcerowsecurity
          LOOP
            EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', t.name);
          END LOOP;
        END $$
        """
    )
