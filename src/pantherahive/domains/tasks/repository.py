"""All of tasks' SQL. Every statement names the tenant explicitly (so the composite indexes
that start with ``tenant_id`` are used) on top of row-level security."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Select,
    delete,
    false,
    func,
    insert,
    select,
    text,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from pantherahive.domains.tasks.schemas import CLOSED_STATUSES, TaskSort
from pantherahive.domains.tasks.tables import Task, TaskDependency
from pantherahive.infra.db import direct

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


# The reads and writes of every task request are fixed SQL on the transaction's asyncpg
# connection (infra/db/direct.py): building these selects with SQLAlchemy on each call
# cost more CPU than everything else a request does.
_CLOSED_SQL = ", ".join(f"'{status}'" for status in _CLOSED)
_BLOCKED_SQL = (
    "coalesce((SELECT true FROM tasks.task_dependencies d"
    " JOIN tasks.tasks b ON b.id = d.depends_on_id"
    f" WHERE d.task_id = t.id AND b.status NOT IN ({_CLOSED_SQL}) LIMIT 1), false)"
)
_COLUMNS_SQL = (
    "t.id, t.project_id, t.title, t.description, t.status, t.priority, t.assignee_id,"
    " t.reporter_id, t.due_date, t.labels,"
    " array(SELECT d.depends_on_id FROM tasks.task_dependencies d WHERE d.task_id = t.id"
    " ORDER BY d.depends_on_id) AS depends_on,"
    f" {_BLOCKED_SQL} AS blocked, t.version, t.created_at, t.updated_at, t.completed_at"
)
_GET_SQL = f"SELECT {_COLUMNS_SQL} FROM tasks.tasks t WHERE t.tenant_id = $1 AND t.id = $2"
# NO KEY UPDATE: it does not conflict with the KEY SHARE lock that inserting a dependency
# edge takes on both tasks (foreign keys), so an ordinary PATCH never waits for, or holds
# up, an edge insert.
_GET_FOR_UPDATE_SQL = _GET_SQL + " FOR NO KEY UPDATE OF t"
_NODES_SQL = (
    "SELECT id, project_id, status FROM tasks.tasks WHERE tenant_id = $1 AND id = ANY($2::uuid[])"
)
_INSERT_COLUMNS = (
    "id", "project_id", "title", "description", "status", "priority", "assignee_id",
    "reporter_id", "due_date", "labels", "version", "created_at", "updated_at", "completed_at",
)
_INSERT_SQL = (
    f"INSERT INTO tasks.tasks (tenant_id, {', '.join(_INSERT_COLUMNS)}) VALUES "
    f"({', '.join(f'${n}' for n in range(1, len(_INSERT_COLUMNS) + 2))})"
)
_UPDATABLE = frozenset(
    {"title", "description", "status", "priority", "assignee_id", "due_date", "labels",
     "version", "updated_at", "completed_at"}
)
_BLOCKERS_SQL = (
    "SELECT t.id, t.status FROM tasks.tasks t"
    " JOIN tasks.task_dependencies d ON d.depends_on_id = t.id"
    " WHERE d.task_id = $2 AND t.tenant_id = $1 ORDER BY t.id FOR SHARE OF t"
)
# sort -> (key column, its SQL type) for the list statement.
_SORT_SQL: dict[TaskSort, tuple[str, str]] = {
    TaskSort.CREATED: ("t.created_at", "timestamptz"),
    TaskSort.CREATED_DESC: ("t.created_at", "timestamptz"),
    TaskSort.DUE: ("t.due_key", "date"),
    TaskSort.PRIORITY_DESC: ("t.priority_order", "smallint"),
    TaskSort.UPDATED: ("t.updated_at", "timestamptz"),
}
_SEARCH_SAMPLE_SQL = (
    f"SELECT count(*) FROM (SELECT tasks.search_task_ids($1, $2) LIMIT {_FEW_MATCHES}) s"
)


_GRAPH_KEY = "hashtextextended('tasks.graph:' || $1, 0)"
_LOCK_GRAPH_SQL = f"SELECT pg_advisory_xact_lock({_GRAPH_KEY})"
_LOCK_GRAPH_SHARED_SQL = f"SELECT pg_advisory_xact_lock_shared({_GRAPH_KEY})"


class Node(NamedTuple):
    id: UUID
    project_id: UUID
    status: str


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
        sql = _GET_FOR_UPDATE_SQL if for_update else _GET_SQL
        row = await direct.fetchrow(self.session, sql, self.tenant_id, task_id)
        return TaskRecord.from_row(row) if row else None

    async def nodes(self, task_ids: Sequence[UUID], *, share: bool = False) -> dict[UUID, Node]:
        """Those of ``task_ids`` that exist; ``share`` locks them against concurrent status
        changes until the transaction ends."""
        if not task_ids:
            return {}
        sql = _NODES_SQL + " FOR SHARE" if share else _NODES_SQL
        rows = await direct.fetch(self.session, sql, self.tenant_id, list(task_ids))
        return {row["id"]: Node(*row) for row in rows}

    async def insert(self, values: dict[str, Any]) -> None:
        await direct.execute(
            self.session, _INSERT_SQL, self.tenant_id, *(values[c] for c in _INSERT_COLUMNS)
        )

    async def update(self, task_id: UUID, values: dict[str, Any]) -> None:
        unknown = values.keys() - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        names = list(values)
        assignments = ", ".join(f"{name} = ${n}" for n, name in enumerate(names, start=3))
        await direct.execute(
            self.session,
            f"UPDATE tasks.tasks SET {assignments} WHERE tenant_id = $1 AND id = $2",
            self.tenant_id,
            task_id,
            *(values[name] for name in names),
        )

    async def delete(self, task_id: UUID) -> None:
        await self.session.execute(
            delete(Task).where(Task.tenant_id == self.tenant_id, Task.id == task_id)
        )

    async def open_blockers(self, task_id: UUID) -> list[UUID]:
        """The tasks ``task_id`` depends on that are still open. *Every* task it depends on,
        closed ones included, is locked FOR SHARE, so none can change status (a closed one
        reopen) before this transaction ends."""
        rows = await direct.fetch(self.session, _BLOCKERS_SQL, self.tenant_id, task_id)
        return [row["id"] for row in rows if row["status"] not in _CLOSED]

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
        key, key_type = _SORT_SQL[sort]
        descending = SORT_KEYS[sort][1]
        query = _ListQuery(self.tenant_id)
        if project_id is not None:
            query.where(f"t.project_id = {query.arg(project_id)}")
        if project_ids is not None:
            query.where(f"t.project_id = ANY({query.arg(list(project_ids))}::uuid[])")
        if exclude_project_ids:
            query.where(f"t.project_id <> ALL({query.arg(list(exclude_project_ids))}::uuid[])")
        _filter(query, filters)
        few_matches = False
        if filters.q:
            # Under RLS the planner cannot use the GIN index for `@@` (not leakproof), so
            # the matches come from tasks.search_task_ids (the index, behind a narrow
            # SECURITY DEFINER door). Few matches: fetch and sort just those. Many: walk
            # the sort index and test each row, which finds a page after a few rows.
            sampled = await direct.fetchval(
                self.session, _SEARCH_SAMPLE_SQL, project_id, filters.q
            )
            few_matches = sampled < _FEW_MATCHES
            q = query.arg(filters.q)
            if few_matches:
                project = query.arg(project_id)
                query.where(f"t.id IN (SELECT tasks.search_task_ids({project}::uuid, {q}))")
            else:
                query.where(f"t.search @@ websearch_to_tsquery('english'::regconfig, {q})")
        if after is not None:
            value, last_id = after
            boundary = f"({query.arg(value)}::{key_type}, {query.arg(last_id)}::uuid)"
            query.where(f"({key}, t.id) {'<' if descending else '>'} {boundary}")
        # Few matches: sort them rather than walk the sort index probing each row, which
        # takes seconds for a rare word in a project of 1M tasks.
        ordered = f"coalesce({key}, {key})" if few_matches else key
        direction = "DESC" if descending else "ASC"
        sql = (
            f"SELECT {_COLUMNS_SQL}, {key} AS sort_key FROM tasks.tasks t"
            f" WHERE {' AND '.join(query.conditions)}"
            f" ORDER BY {ordered} {direction}, t.id {direction} LIMIT {query.arg(limit)}"
        )
        rows = await direct.fetch(self.session, sql, *query.args)
        return [TaskRecord.from_row(row) for row in rows]

    # ---- the dependency graph -------------------------------------------------------------
    async def lock_graph(self, project_id: UUID, *, shared: bool = False) -> None:
        """Serialize changes to one project's dependency graph (held until commit).

        Adding an edge takes it exclusively, so two edges that together close a cycle are
        checked one after the other; moving a task to DONE takes it shared, so no new
        blocker can appear between the check and the commit."""
        sql = _LOCK_GRAPH_SHARED_SQL if shared else _LOCK_GRAPH_SQL
        await direct.execute(self.session, sql, str(project_id))

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


class _ListQuery:
    """A list statement's conditions and positional arguments ($1 is the tenant)."""

    def __init__(self, tenant_id: UUID) -> None:
        self.args: list[Any] = [tenant_id]
        self.conditions: list[str] = ["t.tenant_id = $1"]

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def where(self, condition: str) -> None:
        self.conditions.append(condition)


def _filter(query: _ListQuery, filters: TaskFilter) -> None:
    if filters.statuses:
        query.where(f"t.status = ANY({query.arg(list(filters.statuses))}::text[])")
    if filters.priorities:
        query.where(f"t.priority = ANY({query.arg(list(filters.priorities))}::text[])")
    if filters.assignee_id is not None:
        query.where(f"t.assignee_id = {query.arg(filters.assignee_id)}")
    if filters.label is not None:
        query.where(f"t.labels @> {query.arg([filters.label])}::text[]")
    if filters.due_before is not None:
        query.where(f"t.due_date <= {query.arg(filters.due_before)}")
    if filters.due_after is not None:
        query.where(f"t.due_date >= {query.arg(filters.due_after)}")
    if filters.blocked is not None:
        query.where(_BLOCKED_SQL if filters.blocked else f"NOT {_BLOCKED_SQL}")
