"""Tasks service: tasks and their dependency edges, schema ``tasks`` with RLS.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Listing a project's tasks must cost the same at 10k and 1M tasks, so every sort the API
offers has a composite index that starts with (tenant_id, project_id) and ends with id
(the tie breaker the keyset cursor uses). Sort keys that need a transformation to be a
plain ascending row comparison are generated columns: ``due_key`` puts "no due date"
last (as infinity, which asyncpg reads and writes as ``date.max``, so a cursor holding it
round-trips exactly), ``priority_order`` puts URGENT first.
"""

from __future__ import annotations

from alembic import op

from pantherahive.infra.db.rls import tenant_policy

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS tasks")
    op.execute("GRANT USAGE ON SCHEMA tasks TO pantherahive_app")
    # project_id, assignee_id and reporter_id name other services' rows: no foreign key
    # crosses schemas (services own their data).
    op.execute(
        """
        CREATE TABLE tasks.tasks (
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          project_id uuid NOT NULL,
          title varchar(200) NOT NULL,
          description text,
          status varchar(12) NOT NULL DEFAULT 'TODO',
          priority varchar(6) NOT NULL DEFAULT 'MEDIUM',
          assignee_id uuid,
          reporter_id uuid NOT NULL,
          due_date date,
          labels text[] NOT NULL DEFAULT '{}',
          version integer NOT NULL DEFAULT 1,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          completed_at timestamptz,
          due_key date GENERATED ALWAYS AS (COALESCE(due_date, DATE 'infinity')) STORED,
          priority_order smallint GENERATED ALWAYS AS (
            CASE priority WHEN 'URGENT' THEN 0 WHEN 'HIGH' THEN 1 WHEN 'MEDIUM' THEN 2 ELSE 3 END
          ) STORED,
          search tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector('english'::regconfig, title), 'A')
            || setweight(to_tsvector('english'::regconfig, COALESCE(description, '')), 'B')
          ) STORED,
          CONSTRAINT pk_tasks PRIMARY KEY (id),
          CONSTRAINT ck_tasks_status
            CHECK (status IN ('TODO', 'IN_PROGRESS', 'IN_REVIEW', 'DONE', 'CANCELLED')),
          CONSTRAINT ck_tasks_priority CHECK (priority IN ('LOW', 'MEDIUM', 'HIGH', 'URGENT')),
          CONSTRAINT ck_tasks_title CHECK (char_length(title) >= 1),
          CONSTRAINT ck_tasks_version CHECK (version >= 1)
        )
        """
    )
    for name, columns in (
        ("ix_tasks_by_created", "tenant_id, project_id, created_at, id"),
        ("ix_tasks_by_status", "tenant_id, project_id, status, created_at, id"),
        ("ix_tasks_by_updated", "tenant_id, project_id, updated_at, id"),
        ("ix_tasks_by_due", "tenant_id, project_id, due_key, id"),
        ("ix_tasks_by_priority", "tenant_id, project_id, priority_order, id"),
    ):
        op.execute(f"CREATE INDEX {name} ON tasks.tasks ({columns})")
    op.execute(
        "CREATE INDEX ix_tasks_by_assignee ON tasks.tasks (tenant_id, assignee_id, created_at, id) "
        "WHERE assignee_id IS NOT NULL"
    )
    op.execute("CREATE INDEX ix_tasks_search ON tasks.tasks USING gin (search)")
    op.execute("CREATE INDEX ix_tasks_labels ON tasks.tasks USING gin (labels)")
    tenant_policy("tasks.tasks")

    # "task_id depends on depends_on_id". Both ends are tasks of this schema, so the foreign
    # keys (with cascade) keep edges from outliving their tasks.
    op.execute(
        """
        CREATE TABLE tasks.task_dependencies (
          tenant_id uuid NOT NULL,
          project_id uuid NOT NULL,
          task_id uuid NOT NULL,
          depends_on_id uuid NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT pk_task_dependencies PRIMARY KEY (task_id, depends_on_id),
          CONSTRAINT fk_task_dependencies_task_id_tasks FOREIGN KEY (task_id)
            REFERENCES tasks.tasks (id) ON DELETE CASCADE,
          CONSTRAINT fk_task_dependencies_depends_on_id_tasks FOREIGN KEY (depends_on_id)
            REFERENCES tasks.tasks (id) ON DELETE CASCADE,
          CONSTRAINT ck_task_dependencies_not_self CHECK (task_id <> depends_on_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_task_dependencies_depends_on ON tasks.task_dependencies (depends_on_id)"
    )
    op.execute(
        "CREATE INDEX ix_task_dependencies_project "
        "ON tasks.task_dependencies (tenant_id, project_id)"
    )
    tenant_policy("tasks.task_dependencies")

    op.execute(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON tasks.tasks, tasks.task_dependencies "
        "TO pantherahive_app"
    )

    # Full text through a narrow door: under RLS the planner may not use the GIN index for
    # `@@` (not a leakproof operator), so a rare word in a big project became a full scan.
    # The function runs as the schema owner and applies the tenant filter itself, from the
    # same per-transaction setting the policies use.
    op.execute(
        """
        CREATE FUNCTION tasks.search_task_ids(p_project uuid, p_query text)
        RETURNS SETOF uuid
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, tasks ROWS 100 AS $$
          SELECT id FROM tasks.tasks
          WHERE tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid
            AND (p_project IS NULL OR project_id = p_project)
            AND search @@ websearch_to_tsquery('english'::regconfig, p_query)
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION tasks.search_task_ids(uuid, text) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION tasks.search_task_ids(uuid, text) TO pantherahive_app")


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS tasks CASCADE")
