"""The SQL of the rules' read model: the tasks notifications has heard of (who to tell
when one changes, which dependents a closed task unblocks), built from task events."""

from __future__ import annotations

from typing import Any, NamedTuple
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class TaskViewRow(NamedTuple):
    task_id: UUID
    project_id: UUID | None
    title: str
    status: str
    assignee_id: UUID | None
    reporter_id: UUID | None
    depends_on: list[UUID]


_TASK_COLUMNS = "task_id, project_id, title, status, assignee_id, reporter_id, depends_on"
_TASK_INSERT = (
    "INSERT INTO notifications.task_views AS t (tenant_id, task_id, project_id, title, status, "
    "assignee_id, reporter_id, depends_on) VALUES (CAST(:tenant AS uuid), CAST(:task AS uuid), "
    "CAST(:project AS uuid), CAST(:title AS text), CAST(:status AS text), "
    "CAST(:assignee AS uuid), CAST(:reporter AS uuid), CAST(:depends_on AS uuid[])) "
    "ON CONFLICT (tenant_id, task_id) DO UPDATE SET "
    "project_id = COALESCE(EXCLUDED.project_id, t.project_id), "
)
# What each task event sets (assembled from constants only).
_TASK_UPSERTS = {
    change: text(_TASK_INSERT + sets + " RETURNING " + _TASK_COLUMNS)
    for change, sets in {
        "created": "title = EXCLUDED.title, status = EXCLUDED.status, "
                   "assignee_id = EXCLUDED.assignee_id, reporter_id = EXCLUDED.reporter_id, "
                   "depends_on = EXCLUDED.depends_on",
        "title": "title = EXCLUDED.title",
        "assignee": "assignee_id = EXCLUDED.assignee_id",
        "status": "status = EXCLUDED.status",
        "touch": "title = t.title",
        "dependency_added": "depends_on = CASE WHEN CAST(:dep AS uuid) = ANY(t.depends_on) "
                            "THEN t.depends_on ELSE t.depends_on || CAST(:dep AS uuid) END",
        "dependency_removed": "depends_on = array_remove(t.depends_on, CAST(:dep AS uuid))",
    }.items()
}
_DELETE_TASK = text("""
WITH gone AS (
  DELETE FROM notifications.task_views
   WHERE tenant_id = :tenant AND task_id = :task RETURNING status
), cut AS (
  UPDATE notifications.task_views SET depends_on = array_remove(depends_on, :task)
   WHERE tenant_id = :tenant AND depends_on @> ARRAY[CAST(:task AS uuid)] RETURNING task_id
)
SELECT (SELECT status FROM gone) AS status, ARRAY(SELECT task_id FROM cut) AS dependents
""")
_NO_OPEN_DEPENDENCY = """
   AND NOT EXISTS (
       SELECT 1 FROM notifications.task_views o
        WHERE o.tenant_id = d.tenant_id AND o.task_id = ANY(d.depends_on)
          AND o.status NOT IN ('DONE', 'CANCELLED'))
 ORDER BY d.task_id"""
_UNBLOCKED_AMONG = text(
    f"SELECT {_TASK_COLUMNS} FROM notifications.task_views d "
    "WHERE d.tenant_id = :tenant AND d.task_id = ANY(CAST(:tasks AS uuid[]))"
    + _NO_OPEN_DEPENDENCY
)
_UNBLOCKED_BY = text(
    f"SELECT {_TASK_COLUMNS} FROM notifications.task_views d "
    "WHERE d.tenant_id = :tenant AND d.depends_on @> ARRAY[CAST(:task AS uuid)]"
    + _NO_OPEN_DEPENDENCY
)


class TaskViewRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def apply_task_change(self, tenant_id: UUID, task_id: UUID, change: str,
                                values: dict[str, Any]) -> TaskViewRow:
        """Create or change a task's read-model row in one statement; ``change`` names the
        columns an event sets (``_TASK_UPSERTS``)."""
        row = (await self.session.execute(_TASK_UPSERTS[change], {
            "tenant": tenant_id, "task": task_id, "project": None, "title": "",
            "status": "TODO", "assignee": None, "reporter": None, "depends_on": [],
            "dep": None, **values})).one()
        return TaskViewRow(*row)

    async def delete_task_view(self, tenant_id: UUID,
                               task_id: UUID) -> tuple[str | None, list[UUID]]:
        """Remove a task and every dependency on it: (its last status — None when the read
        model never saw it —, the tasks that depended on it)."""
        row = (await self.session.execute(_DELETE_TASK, {"tenant": tenant_id,
                                                         "task": task_id})).one()
        return (None if row.status is None else str(row.status)), list(row.dependents)

    async def unblocked_among(self, tenant_id: UUID, task_ids: list[UUID]) -> list[TaskViewRow]:
        """Those of ``task_ids`` with no open dependency left. A dependency missing from the
        read model was deleted, which tasks too treats as not blocking."""
        if not task_ids:
            return []
        rows = await self.session.execute(_UNBLOCKED_AMONG, {"tenant": tenant_id,
                                                             "tasks": task_ids})
        return [TaskViewRow(*row) for row in rows]

    async def unblocked_by(self, tenant_id: UUID, task_id: UUID) -> list[TaskViewRow]:
        """Tasks depending on ``task_id`` with no open dependency left (``task_id`` closed)."""
        rows = await self.session.execute(_UNBLOCKED_BY, {"tenant": tenant_id, "task": task_id})
        return [TaskViewRow(*row) for row in rows]
