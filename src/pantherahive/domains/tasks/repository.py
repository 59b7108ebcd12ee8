"""All of tasks' SQL. Every statement names the tenant explicitly (so the composite indexes
that start with ``tenant_id`` are used) on top of row-level security."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    delete,
    false,
    func,
    insert,
    literal_column,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from pantherahive.domains.tasks.schemas import CLOSED_STATUSES, TaskSort
from pantherahive.domains.tasks.tables import Task, TaskDependency

_CLOSED = sorted(CLOSED_STATUSES)
_FEW_MATCHES = 1000
_Blocker = aliased(Task, name="blocker")

# sort -> (key column, descending). Every key is unique together with id.
SORT_KEYS: dict[TaskSort, tuple[InstrumentedAttribute[Any], bool]] = {
    TaskSort.CREATED: (Task.created_at, False),
    TaskSort.CREATED_DESC: (Task.created_at, True),
    TaskSort.DUE: (Task.due_key, False),
    TaskSort.PRIORITY_DESC: (Task.priority_order, False),
    TaskSort.UPDATED: (Task.updated_at, False),
}


@dataclass(slots=True)
class TaskRecord:
    """A task as the API shows it: its row plus its dependency ids and ``blocked``."""

    id: UUID
    project_id: UUID
    title: str
    description: str | None
    status: str
    priority: str
    assignee_id: UUID | None
    reporter_id: UUID
    due_date: date | None
    labels: list[str]
    depends_on: list[UUID]
    blocked: bool
    version: int
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    sort_key: Any = None

    @classmethod
    def from_row(cls, row: Any) -> TaskRecord:
        return cls(*row)


@dataclass(frozen=True, slots=True)
class TaskFilter:
    statuses: Sequence[str] = ()
    priorities: Sequence[str] = ()
    assignee_id: UUID | None = None
    label: str | None = None
    due_before: date | None = None
    due_after: date | None = None
    blocked: bool | None = None
    q: str | None = None


@dataclass(frozen=True, slots=True)
class GraphNode:
    id: UUID
    title: str
    status: str


def _depends_on() -> ColumnElement[Any]:
    ids = (
        select(TaskDependency.depends_on_id)
        .where(TaskDependency.task_id == Task.id)
        .order_by(TaskDependency.depends_on_id)
        .scalar_subquery()
    )
    return func.array(ids)


def _blocked() -> ColumnElement[bool]:
    """Whether any dependency is open, evaluated per row through the primary keys.

    A scalar ``LIMIT 1`` subquery rather than ``EXISTS``: the planner may turn an EXISTS
    into a hashed subplan that reads every open task of the tenant to answer a page of 50.
    """
    first_open = (
        select(true())
        .select_from(TaskDependency)
        .join(_Blocker, _Blocker.id == TaskDependency.depends_on_id)
        .where(TaskDependency.task_id == Task.id, _Blocker.status.not_in(_CLOSED))
        .limit(1)
        .scalar_subquery()
    )
    return func.coalesce(first_open, false())


def _read(sort_key: ColumnElement[Any] | InstrumentedAttribute[Any] | None = None) -> Select[Any]:
    columns: list[Any] = [
        Task.id, Task.project_id, Task.title, Task.description, Task.status, Task.priority,
        Task.assignee_id, Task.reporter_id, Task.due_date, Task.labels,
        _depends_on().label("depends_on"), _blocked().label("blocked"),
        Task.version, Task.created_at, Task.updated_at, Task.completed_at,
    ]
    if sort_key is not None:
        columns.append(sort_key)
    return select(*columns)


# Everything reachable from :start along "depends on" edges, as (node, parent) pairs.
_WALK = """
    WITH RECURSIVE reach(node, parent) AS (
      SELECT CAST(:start AS uuid), CAST(NULL AS uuid)
      UNION
      SELECT d.depends_on_id, d.task_id
      FROM reach r JOIN tasks.task_dependencies d ON d.task_id = r.node
    )
"""
_REACHES = "SELECT 1 FROM reach WHERE node = CAST(:goal AS uuid) LIMIT 1"
_PAIRS = "SELECT node, parent FROM reach"


class TaskRepository:
    def __init__(self, session: AsyncSession, tenant_id: UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    # ---- single tasks ---------------------------------------------------------------------
    async def get(self, task_id: UUID, *, for_update: bool = False) -> TaskRecord | None:
        stmt = _read().where(Task.tenant_id == self.tenant_id, Task.id == task_id)
        if for_update:
            # NO KEY UPDATE: it does not conflict with the KEY SHARE lock that inserting a
            # dependency edge takes on both tasks (foreign keys), so an ordinary PATCH never
            # waits for, or holds up, an edge insert.
            stmt = stmt.with_for_update(of=Task, key_share=True)
        row = (await self.session.execute(stmt)).first()
        return TaskRecord.from_row(row) if row else None

    async def nodes(self, task_ids: Sequence[UUID], *, share: bool = False) -> dict[UUID, Any]:
        """``id -> (id, project_id, status)`` of those that exist; ``share`` locks them
        against concurrent status changes until the transaction ends."""
        if not task_ids:
            return {}
        stmt = select(Task.id, Task.project_id, Task.status).where(
            Task.tenant_id == self.tenant_id, Task.id.in_(task_ids)
        )
        if share:
            stmt = stmt.with_for_update(read=True)
        return {row.id: row for row in await self.session.execute(stmt)}

    async def insert(self, values: dict[str, Any]) -> None:
        await self.session.execute(insert(Task).values(tenant_id=self.tenant_id, **values))

    async def update(self, task_id: UUID, values: dict[str, Any]) -> None:
        await self.session.execute(
            update(Task)
            .where(Task.tenant_id == self.tenant_id, Task.id == task_id)
            .values(**values)
        )

    async def delete(self, task_id: UUID) -> None:
        await self.session.execute(
            delete(Task).where(Task.tenant_id == self.tenant_id, Task.id == task_id)
        )

    async def open_blockers(self, task_id: UUID) -> list[UUID]:
        """The tasks ``task_id`` depends on that are still open. *Every* task it depends on,
        closed ones included, is locked FOR SHARE, so none can change status (a closed one
        reopen) before this transaction ends."""
        stmt = (
            select(Task.id, Task.status)
            .join(TaskDependency, TaskDependency.depends_on_id == Task.id)
            .where(TaskDependency.task_id == task_id, Task.tenant_id == self.tenant_id)
            .order_by(Task.id)
            .with_for_update(read=True, of=Task)
        )
        rows = await self.session.execute(stmt)
        return [row.id for row in rows if row.status not in _CLOSED]

    # ---- lists ----------------------------------------------------------------------------
    async def list_tasks(
        self,
        *,
        project_id: UUID | None = None,
        project_ids: Sequence[UUID] | None = None,
        exclude_project_ids: Sequence[UUID] = (),
        filters: TaskFilter,
        sort: TaskSort,
        after: tuple[Any, UUID] | None,
        limit: int,
    ) -> list[TaskRecord]:
        key, descending = SORT_KEYS[sort]
        stmt = _read(key.label("sort_key")).where(Task.tenant_id == self.tenant_id)
        if project_id is not None:
            stmt = stmt.where(Task.project_id == project_id)
        if project_ids is not None:
            stmt = stmt.where(Task.project_id.in_(project_ids))
        if exclude_project_ids:
            stmt = stmt.where(Task.project_id.not_in(exclude_project_ids))
        stmt = _filtered(stmt, filters)
        few_matches = False
        if filters.q:
            # Under RLS the planner cannot use the GIN index for `@@` (not leakproof), so
            # the matches come from tasks.search_task_ids (the index, behind a narrow
            # SECURITY DEFINER door). Few matches: fetch and sort just those. Many: walk
            # the sort index and test each row, which finds a page after a few rows.
            matches = select(func.tasks.search_task_ids(project_id, filters.q))
            sample = matches.limit(_FEW_MATCHES).subquery()
            counted = await self.session.execute(select(func.count()).select_from(sample))
            few_matches = counted.scalar_one() < _FEW_MATCHES
            if few_matches:
                stmt = stmt.where(Task.id.in_(matches.scalar_subquery()))
            else:
                query = func.websearch_to_tsquery(literal_column("'english'::regconfig"),
                                                  filters.q)
                stmt = stmt.where(Task.search.bool_op("@@")(query))
        if after is not None:
            boundary = tuple_(key, Task.id)
            cursor = tuple_(*after)
            stmt = stmt.where(boundary < cursor if descending else boundary > cursor)
        ordered: ColumnElement[Any] = key.expression
        if few_matches:
            # Sort the matches rather than walk the sort index probing each row, which
            # takes seconds for a rare word in a project of 1M tasks.
            ordered = func.coalesce(key, key)
        order = (
            (ordered.desc(), Task.id.desc()) if descending else (ordered.asc(), Task.id.asc())
        )
        rows = await self.session.execute(stmt.order_by(*order).limit(limit))
        return [TaskRecord.from_row(row) for row in rows]

    # ---- the dependency graph -------------------------------------------------------------
    async def lock_graph(self, project_id: UUID, *, shared: bool = False) -> None:
        """Serialize changes to one project's dependency graph (held until commit).

        Adding an edge takes it exclusively, so two edges that together close a cycle are
        checked one after the other; moving a task to DONE takes it shared, so no new
        blocker can appear between the check and the commit."""
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        await self.session.execute(
            text(f"SELECT {function}(hashtextextended('tasks.graph:' || :project, 0))"),
            {"project": str(project_id)},
        )

    async def edge_exists(self, task_id: UUID, depends_on_id: UUID) -> bool:
        stmt = select(TaskDependency.task_id).where(
            TaskDependency.task_id == task_id, TaskDependency.depends_on_id == depends_on_id
        )
        return (await self.session.execute(stmt)).first() is not None

    async def add_edges(self, project_id: UUID, task_id: UUID, depends_on: Sequence[UUID]) -> None:
        if not depends_on:
            return
        await self.session.execute(
            insert(TaskDependency),
            [
                {"tenant_id": self.tenant_id, "project_id": project_id, "task_id": task_id,
                 "depends_on_id": dep}
                for dep in depends_on
            ],
        )

    async def remove_edge(self, task_id: UUID, depends_on_id: UUID) -> bool:
        result = await self.session.execute(
            delete(TaskDependency)
            .where(
                TaskDependency.tenant_id == self.tenant_id,
                TaskDependency.task_id == task_id,
                TaskDependency.depends_on_id == depends_on_id,
            )
            .returning(TaskDependency.task_id)
        )
        return result.first() is not None

    async def path_between(self, start: UUID, goal: UUID) -> list[UUID] | None:
        """A chain of dependencies start → … → goal, or None if goal is not reachable.

        The walk keeps (node, parent) pairs with UNION, so it visits each edge once however
        many paths a diamond-shaped graph has; the reachability test stops at the first
        hit. The graph is acyclic (that is what this guards), so parent links lead back to
        ``start`` without looping."""
        params = {"start": start, "goal": goal}
        found = await self.session.execute(text(_WALK + _REACHES), params)
        if found.first() is None:
            return None
        pairs = await self.session.execute(text(_WALK + _PAIRS), params)
        parent: dict[UUID, UUID] = {}
        for node, via in pairs:
            if via is not None:
                parent.setdefault(node, via)
        path = [goal]
        while path[-1] != start:
            path.append(parent[path[-1]])
        path.reverse()
        return path

    async def graph(
        self, project_id: UUID, *, max_tasks: int | None = None
    ) -> tuple[list[GraphNode], list[tuple[UUID, UUID]]] | None:
        """Every task of a project (oldest first) and every edge (task, depends_on); None,
        without reading the edges, if it has more than ``max_tasks`` tasks."""
        tasks_query = (
            select(Task.id, Task.title, Task.status)
            .where(Task.tenant_id == self.tenant_id, Task.project_id == project_id)
            .order_by(Task.created_at, Task.id)
        )
        if max_tasks is not None:
            tasks_query = tasks_query.limit(max_tasks + 1)
        tasks = (await self.session.execute(tasks_query)).all()
        if max_tasks is not None and len(tasks) > max_tasks:
            return None
        edges = await self.session.execute(
            select(TaskDependency.task_id, TaskDependency.depends_on_id).where(
                TaskDependency.tenant_id == self.tenant_id,
                TaskDependency.project_id == project_id,
            )
        )
        return (
            [GraphNode(row.id, row.title, row.status) for row in tasks],
            [(row.task_id, row.depends_on_id) for row in edges],
        )

    # ---- reactions to other services' events ----------------------------------------------
    async def delete_project_tasks(self, project_id: UUID) -> int:
        """Edges go with their tasks (ON DELETE CASCADE)."""
        result = await self.session.execute(
            delete(Task)
            .where(Task.tenant_id == self.tenant_id, Task.project_id == project_id)
            .returning(Task.id)
        )
        return len(result.all())

    async def unassign(self, project_id: UUID, user_id: UUID, now: datetime) -> list[UUID]:
        result = await self.session.execute(
            update(Task)
            .where(
                Task.tenant_id == self.tenant_id,
                Task.project_id == project_id,
                Task.assignee_id == user_id,
            )
            .values(assignee_id=None, version=Task.version + 1, updated_at=now)
            .returning(Task.id)
        )
        return list(result.scalars())


def _filtered(stmt: Select[Any], filters: TaskFilter) -> Select[Any]:
    conditions: list[ColumnElement[bool]] = []
    if filters.statuses:
        conditions.append(Task.status.in_(filters.statuses))
    if filters.priorities:
        conditions.append(Task.priority.in_(filters.priorities))
    if filters.assignee_id is not None:
        conditions.append(Task.assignee_id == filters.assignee_id)
    if filters.label is not None:
        conditions.append(Task.labels.contains([filters.label]))
    if filters.due_before is not None:
        conditions.append(Task.due_date <= filters.due_before)
    if filters.due_after is not None:
        conditions.append(Task.due_date >= filters.due_after)
    if filters.blocked is not None:
        conditions.append(_blocked() if filters.blocked else ~_blocked())
    return stmt.where(and_(*conditions)) if conditions else stmt
