"""Projects service: projects and members, schema ``projects`` with RLS.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from pantherahive.infra.db.rls import tenant_policy

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS projects")
    op.execute("GRANT USAGE ON SCHEMA projects TO pantherahive_app")
    # owner_id names an identity user: no foreign key crosses schemas (services own data).
    op.execute(
        """
        CREATE TABLE projects.projects (
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          name varchar(200) NOT NULL,
          description text,
          owner_id uuid NOT NULL,
          status varchar(16) NOT NULL,
          start_date date,
          end_date date,
          version integer NOT NULL DEFAULT 1,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT pk_projects PRIMARY KEY (id),
          CONSTRAINT ck_projects_status
            CHECK (status IN ('ACTIVE', 'ARCHIVED', 'ON_HOLD', 'COMPLETED')),
          CONSTRAINT ck_projects_dates
            CHECK (start_date IS NULL OR end_date IS NULL OR end_date >= start_date),
          CONSTRAINT ck_projects_version CHECK (version >= 1)
        )
        """
    )
    op.execute("CREATE INDEX ix_projects_listing ON projects.projects (tenant_id, created_at, id)")
    op.execute(
        "CREATE INDEX ix_projects_name_prefix "
        "ON projects.projects (tenant_id, lower(name) text_pattern_ops)"
    )
    op.execute("CREATE INDEX ix_projects_owner ON projects.projects (tenant_id, owner_id)")
    tenant_policy("projects.projects")

    op.execute(
        """
        CREATE TABLE projects.members (
          project_id uuid NOT NULL,
          user_id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          role varchar(8) NOT NULL,
          added_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT pk_members PRIMARY KEY (project_id, user_id),
          CONSTRAINT fk_members_project_id_projects FOREIGN KEY (project_id)
            REFERENCES projects.projects (id) ON DELETE CASCADE,
          CONSTRAINT ck_members_role CHECK (role IN ('OWNER', 'EDITOR', 'VIEWER'))
        )
        """
    )
    # "Which projects can this user see" walks members by user.
    op.execute("CREATE INDEX ix_members_user ON projects.members (user_id, project_id)")
    op.execute(
        "CREATE INDEX ix_members_listing ON projects.members (project_id, added_at, user_id)"
    )
    tenant_policy("projects.members")

    op.execute(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON projects.projects, projects.members "
        "TO pantherahive_app"
    )


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS projects CASCADE")
