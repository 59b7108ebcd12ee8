"""All of tasks' SQL. Every statement names the tenant (``TenantRepository``: ``$1`` in
fixed SQL, the base statement's filter in SQLAlchemy), so the composite indexes that start
with ``tenant_id`` are used, on top of row-level security."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from operator import attrgetter
from typing import Any, NamedTuple
from uuid import UUID

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import InstrumentedAttribute

from pantherahive.domains.tasks.schemas import CLOSED_STATUSES, TaskSort
from pantherahive.domains.tasks.tables import Task, TaskDependency
from pantherahive.infra.db import direct
from pantherahive.infra.db.repository import TenantRepository

_CLOSED = sorted(CLOSED_STATUSES)
_FEW_MATCHES = 1000

# The reads and writes of every task request are fixed SQL on the transaction's asyncpg
# connection (infra/db/direct.py): building these selects with SQLAlchemy on each call
# cost more CPU than everything else a request does. The strings are built once, here,
# from the declaration of a task's shape (``TaskRecord``).
_CLOSED_SQL = ", ".join(f"'{status}'" for status in _CLOSED)
# A scalar ``LIMIT 1`` subquery rather than ``EXISTS``: the planner may turn an EXISTS into
# a hashed subplan that reads every open task of the tenant to answer a page of 50.
_BLOCKED_SQL = (
    "coalesce((SELECT true FROM tasks.task_dependencies d"
    " JOIN tasks.tasks b ON b.id = d.depends_on_id"
    f" WHERE d.task_id = t.id AND b.status NOT IN ({_CLOSED_SQL}) LIMIT 1), false)"
)
_DEPENDS_ON_SQL = (
    "array(SELECT d.depends_on_id FROM tasks.task_dependencies d WHERE d.task_id = t.id"
    " ORDER BY d.depends_on_id)"
)

# How a field of ``TaskRecord`` maps to tasks.tasks (its dataclass ``metadata``): none, a
# column written on insert only; _WRITABLE, a column updates may set as well;
# _read_from(sql), computed when the task is read, never written; _NOT_SHOWN, outside the
# task's shape altogether.
_WRITABLE: dict[str, Any] = {"writable": True}
_NOT_SHOWN: dict[str, Any] = {"shown": False}


def _read_from(sql: str) -> dict[str, Any]:
    return {"sql": sql}


@dataclass(slots=True)
class TaskRecord:
    """A task as the API shows it: its row plus its dependency ids and ``blocked``.

    The one declaration of a task's shape. In this order, the fields are what every read
    selects; the plain and writable ones are the columns an insert writes; the writable
    ones what an update may set; the shown ones, camelCased, the JSON document of
    ``TaskRead`` (router), and ``task.created`` takes its fields from here too.
    """

    id: UUID
    project_id: UUID
    title: str = field(metadata=_WRITABLE)
    description: str | None = field(metadata=_WRITABLE)
    status: str = field(metadata=_WRITABLE)
    priority: str = field(metadata=_WRITABLE)
    assignee_id: UUID | None = field(metadata=_WRITABLE)
    reporter_id: UUID
    due_date: date | None = field(metadata=_WRITABLE)
    labels: list[str] = field(metadata=_WRITABLE)
    depends_on: list[UUID] = field(metadata=_read_from(_DEPENDS_ON_SQL))
    blocked: bool = field(metadata=_read_from(_BLOCKED_SQL))
    version: int = field(metadata=_WRITABLE)
    created_at: datetime
    updated_at: datetime = field(metadata=_WRITABLE)
    completed_at: datetime | None = field(metadata=_WRITABLE)
    # Only in lists: the value of the list's sort column, for the next page's cursor.
    sort_key: Any = field(default=None, metadata=_NOT_SHOWN)

    @classmethod
    def from_row(cls, row: Any) -> TaskRecord:
        return cls(*row)


_SHAPE = tuple(f for f in fields(TaskRecord) if f.metadata.get("shown", True))
# The fields of a task's document, in order.
TASK_FIELDS: tuple[str, ...] = tuple(f.name for f in _SHAPE)
_STORED = tuple(f.name for f in _SHAPE if "sql" not in f.metadata)
_stored_values = attrgetter(*_STORED)
_UPDATABLE = frozenset(f.name for f in _SHAPE if f.metadata.get("writable"))
_COLUMNS_SQL = ", ".join(
    f"{f.metadata['sql']} AS {f.name}" if "sql" in f.metadata else f"t.{f.name}"
    for f in _SHAPE
)
_INSERT_SQL = (
    f"INSERT INTO tasks.tasks (tenant_id, {', '.join(_STORED)}) VALUES "
    f"({', '.join(f'${n}' for n in range(1, len(_STORED) + 2))})"
)
_GET_SQL = f"SELECT {_COLUMNS_SQL} FROM tasks.tasks t WHERE t.tenant_id = $1 AND t.id = $2"
# NO KEY UPDATE: it does not conflict with the KEY SHARE lock that inserting a dependency
# edge takes on both tasks (foreign keys), so an ordinary PATCH never waits for, or holds
# up, an edge insert.
_GET_FOR_UPDATE_SQL = _GET_SQL + " FOR NO KEY UPDATE OF t"
_NODES_SQL = (
    "SELECT id, project_id, status FROM tasks.tasks WHERE tenant_id = $1 AND id = ANY($2::uuid[])"
)
_BLOCKERS_SQL = (
    "SELECT t.id, t.status FROM tasks.tasks t"
    " JOIN tasks.task_dependencies d ON d.depends_on_id = t.id"
    " WHERE d.task_id = $2 AND t.tenant_id = $1 ORDER BY t.id FOR SHARE OF t"
)
_SEARCH_SAMPLE_SQL = (
    f"SELECT count(*) FROM (SELECT tasks.search_task_ids($1, $2) LIMIT {_FEW_MATCHES}) s"
)


_POSTGRESQL = postgresql.dialect()  # type: ignore[no-untyped-call]


class SortKey(NamedTuple):
    """A list order: its key column (unique together with id) and its direction."""

    column: InstrumentedAttribute[Any]
    descending: bool

    @property
    def sql(self) -> str:
        return f"t.{self.column.key}"

    @property
    def sql_type(self) -> str:
        """The column's type, for casting the cursor's key in the list statement."""
        return str(self.column.type.compile(dialect=_POSTGRESQL))


SORT_KEYS: dict[TaskSort, SortKey] = {
    TaskSort.CREATED: SortKey(Task.created_at, descending=False),
    TaskSort.CREATED_DESC: SortKey(Task.created_at, descending=True),
    TaskSort.DUE: SortKey(Task.due_key, descending=False),
    TaskSort.PRIORITY_DESC: SortKey(Task.priority_order, descending=False),
    TaskSort.UPDATED: SortKey(Task.updated_at, descending=False),
}
# sort -> (key column, its SQL type) for the list statement, computed once.
_SORT_SQL = {sort: (key.sql, key.sql_type) for sort, key in SORT_KEYS.items()}

# The key of a project's graph lock; $1 is the tenant.
_GRAPH_KEY = "hashtextextended('tasks.graph:' || $1::uuid || ':' || $2, 0)"
_LOCK_GRAPH_SQL = f"SELECT pg_advisory_xact_lock({_GRAPH_KEY})"
_LOCK_GRAPH_SHARED_SQL = f"SELECT pg_advisory_xact_lock_shared({_GRAPH_KEY})"


class Node(NamedTuple):
    id: UUID
    project_id: UUID
    status: str


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


# Everything reachable from $2 along "depends on" edges of tenant $1, as (node, parent).
_WALK = """
    WITH RECURSIVE reach(node, parent) AS (
      SELECT $2::uuid, NULL::uuid
      UNION
      SELECT d.depends_on_id, d.task_id
      FROM reach r JOIN tasks.task_dependencies d ON d.task_id = r.node AND d.tenant_id = $1
    )
"""
_REACHES_SQL = _WALK + "SELECT 1 FROM reach WHERE node = $3::uuid LIMIT 1"
_PAIRS_SQL = _WALK + "SELECT node, parent FROM reach"


class TaskRepository(TenantRepository):
    # ---- single tasks ---------------------------------------------------------------------
    async def get(self, task_id: UUID, *, for_update: bool = False) -> TaskRecord | None:
        row = await self.fetchrow(_GET_FOR_UPDATE_SQL if for_update else _GET_SQL, task_id)
        return TaskRecord.from_row(row) if row else None

    async def nodes(self, task_ids: Sequence[UUID], *, share: bool = False) -> dict[UUID, Node]:
        """Those of ``task_ids`` that exist; ``share`` locks them against concurrent status
        changes until the transaction ends."""
        if not task_ids:
            return {}
        sql = _NODES_SQL + " FOR SHARE" if share else _NODES_SQL
        rows = await self.fetch(sql, list(task_ids))
        return {row["id"]: Node(*row) for row in rows}

    async def insert(self, task: TaskRecord) -> None:
        """The task's row (its dependency edges are :meth:`add_edges`)."""
        await self.execute(_INSERT_SQL, *_stored_values(task))

    async def update_task(self, task_id: UUID, values: dict[str, Any]) -> None:
        unknown = values.keys() - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        names = list(values)
        assignments = ", ".join(f"{name} = ${n}" for n, name in enumerate(names, start=3))
        await self.execute(
            f"UPDATE tasks.tasks SET {assignments} WHERE tenant_id = $1 AND id = $2",
            task_id,
            *(values[name] for name in names),
        )

    async def delete_task(self, task_id: UUID) -> None:
        await self.session.execute(self.delete(Task).where(Task.id == task_id))

    async def open_blockers(self, task_id: UUID) -> list[UUID]:
        """The tasks ``task_id`` depends on that are still open. *Every* task it depends on,
        closed ones included, is locked FOR SHARE, so none can change status (a closed one
        reopen) before this transaction ends."""
        rows = await self.fetch(_BLOCKERS_SQL, task_id)
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
        descending = SORT_KEYS[sort].descending
        query = _ListQuery()
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
            # (The function reads the tenant from the transaction's app.tenant_id itself.)
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
        rows = await self.fetch(sql, *query.args)
        return [TaskRecord.from_row(row) for row in rows]

    # ---- the dependency graph -------------------------------------------------------------
    async def lock_graph(self, project_id: UUID, *, shared: bool = False) -> None:
        """Serialize changes to one project's dependency graph (held until commit).

        Adding an edge takes it exclusively, so two edges that together close a cycle are
        checked one after the other; moving a task to DONE takes it shared, so no new
        blocker can appear between the check and the commit."""
        await self.execute(_LOCK_GRAPH_SHARED_SQL if shared else _LOCK_GRAPH_SQL, str(project_id))

    async def edge_exists(self, task_id: UUID, depends_on_id: UUID) -> bool:
        stmt = self.select(TaskDependency, TaskDependency.task_id).where(
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
            self.delete(TaskDependency)
            .where(
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
        if await self.fetchval(_REACHES_SQL, start, goal) is None:
            return None
        parent: dict[UUID, UUID] = {}
        for node, via in await self.fetch(_PAIRS_SQL, start):
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
            self.select(Task, Task.id, Task.title, Task.status)
            .where(Task.project_id == project_id)
            .order_by(Task.created_at, Task.id)
        )
        if max_tasks is not None:
            tasks_query = tasks_query.limit(max_tasks + 1)
        tasks = (await self.session.execute(tasks_query)).all()
        if max_tasks is not None and len(tasks) > max_tasks:
            return None
        edges = await self.session.execute(
            self.select(TaskDependency, TaskDependency.task_id, TaskDependency.depends_on_id)
            .where(TaskDependency.project_id == project_id)
        )
        return (
            [GraphNode(row.id, row.title, row.status) for row in tasks],
            [(row.task_id, row.depends_on_id) for row in edges],
        )

    # ---- reactions to other services' events ----------------------------------------------
    async def delete_project_tasks(self, project_id: UUID) -> int:
        """Edges go with their tasks (ON DELETE CASCADE)."""
        result = await self.session.execute(
            self.delete(Task).where(Task.project_id == project_id).returning(Task.id)
        )
        return len(result.all())

    async def unassign(self, project_id: UUID, user_id: UUID, now: datetime) -> list[UUID]:
        result = await self.session.execute(
            self.update(Task)
            .where(Task.project_id == project_id, Task.assignee_id == user_id)
            .values(assignee_id=None, version=Task.version + 1, updated_at=now)
            .returning(Task.id)
        )
        return list(result.scalars())


class _ListQuery:
    """A list statement's conditions and its arguments after the tenant ($1)."""

    def __init__(self) -> None:
        self.args: list[Any] = []
        self.conditions: list[str] = ["t.tenant_id = $1"]

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args) + 1}"

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
