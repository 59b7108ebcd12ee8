"""Notifications: JSONB notification documents, preferences, channel deliveries, stream
tickets, webhook subscriptions and their delivery log (schema ``notifications``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from pantherahive.infra.db.rls import tenant_policy

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = (
    "notifications", "preferences", "deliveries", "stream_tickets", "webhooks",
    "webhook_deliveries", "task_views",
)


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS notifications")
    op.execute("GRANT USAGE ON SCHEMA notifications TO pantherahive_app")
    op.execute(
        """
        CREATE TABLE notifications.notifications (
          id uuid NOT NULL,
          seq bigint GENERATED ALWAYS AS IDENTITY,
          tenant_id uuid NOT NULL,
          user_id uuid NOT NULL,
          event_id uuid,
          type varchar(50) NOT NULL,
          document jsonb NOT NULL,
          in_app boolean NOT NULL DEFAULT true,
          read_at timestamptz,
          created_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT pk_notifications PRIMARY KEY (id),
          CONSTRAINT uq_notifications_seq UNIQUE (seq),
          CONSTRAINT uq_notifications_event UNIQUE (tenant_id, event_id, user_id, type)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_notifications_user ON notifications.notifications "
        "(tenant_id, user_id, created_at DESC, id DESC)"
    )
    op.execute(
        "CREATE INDEX ix_notifications_unread ON notifications.notifications "
        "(tenant_id, user_id, created_at DESC, id DESC) WHERE read_at IS NULL AND in_app"
    )
    op.execute(
        "CREATE INDEX ix_notifications_user_seq ON notifications.notifications "
        "(tenant_id, user_id, seq)"
    )
    op.execute(
        """
        CREATE TABLE notifications.preferences (
          tenant_id uuid NOT NULL,
          user_id uuid NOT NULL,
          phone varchar(20),
          channels jsonb NOT NULL DEFAULT '{}'::jsonb,
          updated_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT pk_preferences PRIMARY KEY (tenant_id, user_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE notifications.deliveries (
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          notification_id uuid NOT NULL,
          channel varchar(10) NOT NULL,
          template_name varchar(80) NOT NULL,
          recipient varchar(254) NOT NULL,
          status varchar(10) NOT NULL DEFAULT 'pending',
          attempts integer NOT NULL DEFAULT 0,
          last_error text,
          payload jsonb,
          next_attempt_at timestamptz NOT NULL DEFAULT now(),
          created_at timestamptz NOT NULL DEFAULT now(),
          sent_at timestamptz,
          CONSTRAINT pk_deliveries PRIMARY KEY (id),
          CONSTRAINT fk_deliveries_notification_id_notifications FOREIGN KEY (notification_id)
            REFERENCES notifications.notifications (id) ON DELETE CASCADE,
          CONSTRAINT ck_deliveries_status CHECK (status IN ('pending', 'sent', 'failed')),
          CONSTRAINT ck_deliveries_channel CHECK (channel IN ('email', 'sms', 'push', 'webhook'))
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_deliveries_tenant ON notifications.deliveries "
        "(tenant_id, created_at DESC, id DESC)"
    )
    op.execute(
        "CREATE INDEX ix_deliveries_due ON notifications.deliveries (next_attempt_at) "
        "WHERE status = 'pending'"
    )
    op.execute(
        """
        CREATE TABLE notifications.stream_tickets (
          ticket_hash bytea NOT NULL,
          tenant_id uuid NOT NULL,
          user_id uuid NOT NULL,
          expires_at timestamptz NOT NULL,
          used_at timestamptz,
          CONSTRAINT pk_stream_tickets PRIMARY KEY (ticket_hash)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE notifications.webhooks (
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          url text NOT NULL,
          events text[] NOT NULL,
          secret_enc text NOT NULL,
          previous_secret_enc text,
          previous_secret_expires_at timestamptz,
          enabled boolean NOT NULL DEFAULT true,
          consecutive_failures integer NOT NULL DEFAULT 0,
          disabled_reason text,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          CONSTRAINT pk_webhooks PRIMARY KEY (id)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_webhooks_tenant ON notifications.webhooks (tenant_id, created_at, id)"
    )
    op.execute(
        """
        CREATE TABLE notifications.webhook_deliveries (
          id uuid NOT NULL,
          tenant_id uuid NOT NULL,
          webhook_id uuid NOT NULL,
          event_id uuid NOT NULL,
          event_type varchar(100) NOT NULL,
          payload jsonb NOT NULL,
          status varchar(10) NOT NULL DEFAULT 'pending',
          attempts integer NOT NULL DEFAULT 0,
          response_status integer,
          duration_ms integer,
          last_error text,
          next_attempt_at timestamptz NOT NULL DEFAULT now(),
          created_at timestamptz NOT NULL DEFAULT now(),
          sent_at timestamptz,
          redelivery_of uuid,
          CONSTRAINT pk_webhook_deliveries PRIMARY KEY (id),
          CONSTRAINT fk_webhook_deliveries_webhook_id_webhooks FOREIGN KEY (webhook_id)
            REFERENCES notifications.webhooks (id) ON DELETE CASCADE,
          CONSTRAINT ck_webhook_deliveries_status CHECK (status IN ('pending', 'sent', 'failed'))
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_webhook_deliveries_event ON notifications.webhook_deliveries "
        "(webhook_id, event_id) WHERE redelivery_of IS NULL"
    )
    op.execute(
        "CREATE INDEX ix_webhook_deliveries_log ON notifications.webhook_deliveries "
        "(tenant_id, webhook_id, created_at DESC, id DESC)"
    )
    op.execute(
        "CREATE INDEX ix_webhook_deliveries_due ON notifications.webhook_deliveries "
        "(next_attempt_at) WHERE status = 'pending'"
    )
    # A read model of tasks, fed by task.* events: who reports / is assigned to a task and
    # what it depends on, so status changes and unblocking reach the right people without
    # reading the tasks service's tables.
    op.execute(
        """
        CREATE TABLE notifications.task_views (
          tenant_id uuid NOT NULL,
          task_id uuid NOT NULL,
          project_id uuid,
          title varchar(200) NOT NULL DEFAULT '',
          status varchar(20) NOT NULL DEFAULT 'TODO',
          assignee_id uuid,
          reporter_id uuid,
          depends_on uuid[] NOT NULL DEFAULT '{}',
          CONSTRAINT pk_task_views PRIMARY KEY (tenant_id, task_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_task_views_depends_on ON notifications.task_views USING gin (depends_on)"
    )
    for table in TABLES:
        tenant_policy(f"notifications.{table}")
        op.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON notifications.{table} TO pantherahive_app"
        )

    # Delivery workers serve every tenant: these two doors (SECURITY DEFINER, owned by the
    # schema owner) hand out due work — only (tenant, id) pairs, leased so that several
    # processes never send the same delivery at once. The work itself is then read and
    # updated under that tenant's RLS.
    for name, table, extra in (
        ("claim_deliveries", "deliveries", "AND channel = ANY(p_channels)"),
        ("claim_webhook_deliveries", "webhook_deliveries", ""),
    ):
        op.execute(
            f"""
            CREATE FUNCTION notifications.{name}(p_channels text[], p_limit integer,
                                                 p_lease_seconds integer)
            RETURNS TABLE (tenant_id uuid, id uuid)
            LANGUAGE sql VOLATILE SECURITY DEFINER
            SET search_path = pg_catalog, notifications AS $$
              UPDATE notifications.{table} d
                 SET next_attempt_at = now() + make_interval(secs => p_lease_seconds)
               WHERE d.id IN (
                 SELECT x.id FROM notifications.{table} x
                  WHERE x.status = 'pending' AND x.next_attempt_at <= now() {extra}
                  ORDER BY x.next_attempt_at
                  LIMIT p_limit
                  FOR UPDATE SKIP LOCKED)
              RETURNING d.tenant_id, d.id
            $$
            """  # noqa: S608
        )
        op.execute(
            f"REVOKE ALL ON FUNCTION notifications.{name}(text[], integer, integer) FROM PUBLIC"
        )
        op.execute(
            f"GRANT EXECUTE ON FUNCTION notifications.{name}(text[], integer, integer) "
            "TO pantherahive_app"
        )


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS notifications CASCADE")
