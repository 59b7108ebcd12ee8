"""Outbox: ``audited`` — whether the audit trail records the event.

A write announces itself with one primary event (recorded in the audit trail) and may emit
derived ones for other consumers (``task.assigned`` beside ``task.updated``); those are
written with ``audited = false`` and the audit consumer skips them, so every request leaves
exactly one audit event.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default: no table rewrite. The SECURITY DEFINER readers of 0004 return
    # SETOF bus.outbox with `o.*`, so they carry the new column without being replaced.
    op.execute("ALTER TABLE bus.outbox ADD COLUMN audited boolean NOT NULL DEFAULT true")


def downgrade() -> None:
    op.execute("ALTER TABLE bus.outbox DROP COLUMN IF EXISTS audited")
