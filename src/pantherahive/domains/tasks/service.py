"""Tasks' rules: permissions, assignment, status, the dependency graph, events.

Services never commit; the edge does. Every change writes its events to the outbox in the
same transaction. Rights on a project come from projects' api only: a project the caller
cannot see makes its tasks 404, exactly like a task of another tenant.
"""

from __future__ import annotations

import dataclasses
import heapq
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.clock import now
from pantherahive.core.errors import (
    FieldError,
    Forbidden,
    NotFound,
    ValidationFailed,
)
from pantherahive.core.etags import check_if_match
from pantherahive.core.events import EventData
from pantherahive.core.naming import camel
from pantherahive.core.pagination import cut_page, decode_cursor
from pantherahive.core.schemas import never_null, refuse_nulls
from pantherahive.domains.identity.api import AuthContext, active_user_ids
from pantherahive.domains.projects.api import (
    ProjectAccess,
    existing_project_ids,
    is_project_member,
    project_access,
    readable_project_ids,
)
from pantherahive.domains.tasks import events
from pantherahive.domains.tasks.errors import (
    DependencyCycle,
    DependencyNotFound,
    IneligibleAssignee,
    InvalidDependency,
    ScheduleTooLarge,
    TaskBlocked,
    TaskNotFound,
)
from pantherahive.domains.tasks.permissions import TaskAction, task_may
from pantherahive.domains.tasks.repository import (
    SORT_KEYS,
    GraphNode,
    TaskFilter,
    TaskRecord,
    TaskRepository,
)
from pantherahive.domains.tasks.schemas import (
    CLOSED_STATUSES,
    Schedule,
    ScheduleItem,
    TaskCreate,
    TaskPriority,
    TaskRead,
    TaskSort,
    TaskStatus,
    TaskUpdate,
)
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.security import authz

DONE = TaskStatus.DONE.value
_PRIORITY_KEYS = range(len(TaskPriority))  # priority_order: URGENT=0 … LOW=3
# What a PATCH may change, with its API name (task.updated's {"changes": ...} keys).
_WIRE = {name: camel(name) for name in TaskUpdate.model_fields}
# Those a PATCH may not set to null: the task's document never shows them null.
_NOT_NULL = never_null(TaskUpdate, TaskRead)


# ---- reading ---------------------------------------------------------------------------------
async def get_task(session: AsyncSession, auth: AuthContext, task_id: UUID) -> TaskRecord:
    task, _ = await _visible_task(session, auth, task_id)
    return task


async def list_project_tasks(
    session: AsyncSession,
    auth: AuthContext,
    project_id: UUID,
    *,
    filters: TaskFilter,
    sort: TaskSort,
    cursor: str | None,
    limit: int,
) -> tuple[list[TaskRecord], str | None]:
    await _project(session, auth, project_id)
    return await _page(
        TaskRepository(session, auth.tenant_id), sort, cursor, limit,
        project_id=project_id, filters=filters,
    )


async def list_my_tasks(
    session: AsyncSession,
    auth: AuthContext,
    *,
    filters: TaskFilter,
    sort: TaskSort,
    cursor: str | None,
    limit: int,
) -> tuple[list[TaskRecord], str | None]:
    """Tasks assigned to the caller, in the projects the caller can still see.

    A deleted project's tasks remain until tasks consumes ``project.deleted`` (or for good,
    if that event dead-letters). A member's visible ids never name a deleted project, but
    an ADMIN's are "all": the rows of each page are checked against projects' api and a
    page with a vanished project is read again without it, so the list agrees with
    ``GET /v1/tasks/{id}`` (404 at once)."""
    visible = await readable_project_ids(session, auth)
    if visible is not None and not visible:
        return [], None
    filters = dataclasses.replace(filters, assignee_id=auth.user_id)
    repo = TaskRepository(session, auth.tenant_id)
    after = _decode_cursor(cursor, sort) if cursor else None
    vanished: set[UUID] = set()
    while True:
        rows = await repo.list_tasks(
            project_ids=visible, exclude_project_ids=sorted(vanished), filters=filters,
            sort=sort, after=after, limit=limit + 1,
        )
        if visible is not None:
            break
        shown = {row.project_id for row in rows}
        gone = shown - await existing_project_ids(session, shown)
        if not gone:
            break
        vanished |= gone
    return _cut(rows, sort, limit)


async def _page(
    repo: TaskRepository,
    sort: TaskSort,
    cursor: str | None,
    limit: int,
    *,
    filters: TaskFilter,
    project_id: UUID | None = None,
) -> tuple[list[TaskRecord], str | None]:
    after = _decode_cursor(cursor, sort) if cursor else None
    rows = await repo.list_tasks(
        project_id=project_id, filters=filters, sort=sort, after=after, limit=limit + 1,
    )
    return _cut(rows, sort, limit)


def _cut(rows: list[TaskRecord], sort: TaskSort, limit: int
         ) -> tuple[list[TaskRecord], str | None]:
    """A page of ``limit`` from ``limit + 1`` rows; the cursor names its sort."""

    def cursor_of(last: TaskRecord) -> list[Any]:
        key = last.sort_key.isoformat() if isinstance(last.sort_key, date) else last.sort_key
        return [sort.value, key, str(last.id)]

    return cut_page(rows, limit, cursor_of)


def _decode_cursor(cursor: str, sort: TaskSort) -> tuple[Any, UUID]:
    """The cursor carries its sort, so one minted for another order is refused (422).

    A cursor is client input: anything but what ``_page`` writes — a key of the wrong type,
    a naive or out-of-range timestamp, an id that is not a UUID string — is 422, never a
    value handed to the database (asyncpg overflows on timestamps near the calendar's
    ends, and a priority outside smallint)."""
    name, key, raw_id = decode_cursor(cursor, arity=3)
    try:
        if name != sort.value or not isinstance(raw_id, str):
            raise ValueError("cursor of another sort, or an id that is not a string")
        return _cursor_key(SORT_KEYS[sort].column.type.python_type, key), UUID(raw_id)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationFailed(
            "The cursor is not valid for this list.",
            errors=[FieldError("cursor", "malformed or minted for another sort")],
        ) from exc


def _cursor_key(python_type: type, key: Any) -> Any:
    if python_type is datetime:
        if not isinstance(key, str):
            raise TypeError("a timestamp key is a string")
        stamp = datetime.fromisoformat(key)
        if stamp.tzinfo is None:
            raise ValueError("a timestamp key carries its offset")
        return stamp.astimezone(UTC)  # OverflowError past year 9999 or before year 1
    if python_type is date:
        if not isinstance(key, str):
            raise TypeError("a date key is a string")
        return date.fromisoformat(key)  # date.max stands for "no due date" (infinity)
    if type(key) is not int or key not in _PRIORITY_KEYS:
        raise ValueError("a priority key is one of the priority_order values")
    return key


async def project_schedule(
    session: AsyncSession, auth: AuthContext, project_id: UUID, *, max_tasks: int
) -> Schedule:
    """The whole graph is read and ordered in memory, so a project over ``max_tasks`` tasks
    is refused (409) rather than answered with megabytes after seconds of work."""
    await _project(session, auth, project_id)
    graph = await TaskRepository(session, auth.tenant_id).graph(project_id, max_tasks=max_tasks)
    if graph is None:
        raise ScheduleTooLarge(max_tasks)
    return build_schedule(*graph)


def build_schedule(nodes: list[GraphNode], edges: list[tuple[UUID, UUID]]) -> Schedule:
    """Kahn's algorithm, oldest task first among the ready ones; depth is the longest chain
    of dependencies below a task, and the critical path follows the deepest dependency of
    the deepest task down to a task that depends on nothing."""
    rank = {node.id: index for index, node in enumerate(nodes)}
    dependents: dict[UUID, list[UUID]] = {node.id: [] for node in nodes}
    waiting = dict.fromkeys(rank, 0)
    for task_id, dep_id in edges:
        if task_id in rank and dep_id in rank:
            dependents[dep_id].append(task_id)
            waiting[task_id] += 1
    depth = dict.fromkeys(rank, 0)
    via: dict[UUID, UUID] = {}
    ready = [(rank[task_id], task_id) for task_id, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    while ready:
        _, dep_id = heapq.heappop(ready)
        for task_id in dependents[dep_id]:
            if depth[dep_id] + 1 > depth[task_id]:
                depth[task_id] = depth[dep_id] + 1
                via[task_id] = dep_id
            waiting[task_id] -= 1
            if waiting[task_id] == 0:
                heapq.heappush(ready, (rank[task_id], task_id))
    by_id = {node.id: node for node in nodes}
    ordered = sorted(rank, key=lambda task_id: (depth[task_id], rank[task_id]))
    items = [
        ScheduleItem(task_id=task_id, title=by_id[task_id].title,
                     status=TaskStatus(by_id[task_id].status), depth=depth[task_id])
        for task_id in ordered
    ]
    path: list[UUID] = []
    if ordered:
        end = max(ordered, key=lambda task_id: (depth[task_id], -rank[task_id]))
        path = [end]
        while path[-1] in via:
            path.append(via[path[-1]])
        path.reverse()
    return Schedule(items=items, critical_path=path, length=len(path))


# ---- writing ---------------------------------------------------------------------------------
async def create_task(
    session: AsyncSession, auth: AuthContext, project_id: UUID, *, body: TaskCreate
) -> TaskRecord:
    # Locked: a task committed after its project's deletion was consumed would be orphaned,
    # and an assignee's removal consumed before it would leave a non-member assigned.
    access = await project_access(session, auth, project_id, lock=True)
    if not task_may(access, TaskAction.CREATE):
        raise await _deny(session, auth, TaskAction.CREATE, "project", project_id)
    if body.assignee_id is not None:
        await _require_eligible(session, project_id, body.assignee_id)
    repo = TaskRepository(session, auth.tenant_id)
    task_id = uuid4()
    blocked = False
    if body.depends_on:
        # Shared: no cycle can pass through a task nothing depends on yet, but a
        # dependency must not be deleted between this check and the insert.
        await repo.lock_graph(project_id, shared=True)
        found = await repo.nodes(body.depends_on, share=True)
        for dep_id in body.depends_on:
            _check_dependency(found.get(dep_id), dep_id, project_id)
        open_ids = sorted(d for d in body.depends_on if found[d].status not in CLOSED_STATUSES)
        if body.status is TaskStatus.DONE and open_ids:
            raise TaskBlocked(open_ids)
        blocked = bool(open_ids)
    stamp = now()
    task = TaskRecord(
        id=task_id, project_id=project_id, title=body.title, description=body.description,
        status=body.status.value, priority=body.priority.value, assignee_id=body.assignee_id,
        reporter_id=auth.user_id, due_date=body.due_date, labels=list(body.labels),
        depends_on=sorted(body.depends_on), blocked=blocked, version=1, created_at=stamp,
        updated_at=stamp, completed_at=stamp if body.status is TaskStatus.DONE else None,
    )
    await repo.insert(task)
    await repo.add_edges(project_id, task_id, body.depends_on)
    # task.created carries the task's own fields, by the names the record declares.
    created = {name: getattr(task, name) for name in events.TaskCreated.model_fields}
    await _emit(session, task, events.TaskCreated(**created))
    if task.assignee_id is not None:
        # Derived: task.created (the audited event) already carries assigneeId.
        await _emit(session, task, events.TaskAssigned(
            project_id=task.project_id, assignee_id=task.assignee_id,
            previous_assignee_id=None), audited=False)
    return task


async def update_task(
    session: AsyncSession,
    auth: AuthContext,
    task_id: UUID,
    *,
    body: TaskUpdate,
    if_match: str | None = None,
) -> TaskRecord:
    """The assignee without write rights may change ``status`` and nothing else (403);
    ``If-Match`` is checked against the locked row, so two writers holding the same
    version cannot both succeed."""
    repo = TaskRepository(session, auth.tenant_id)
    if body.status is TaskStatus.DONE:
        # Lock order is always graph lock, then task rows (as adding an edge does), so a
        # PATCH to DONE and an edge insert on the same task cannot deadlock.
        found = (await repo.nodes([task_id])).get(task_id)
        if found is not None:
            await repo.lock_graph(found.project_id, shared=True)
    task, access = await _visible_task(session, auth, task_id, for_update=True)
    sent = body.model_fields_set
    if not task_may(access, TaskAction.UPDATE):
        is_assignee = task.assignee_id == auth.user_id
        status_only = sent <= {"status"}
        if not (status_only and task_may(access, TaskAction.UPDATE_STATUS,
                                         is_assignee=is_assignee)):
            action = TaskAction.UPDATE_STATUS if status_only else TaskAction.UPDATE
            raise await _deny(session, auth, action, "task", task.id)
    check_if_match(if_match, task.version, resource="task")
    refuse_nulls(body, _NOT_NULL)

    changes: dict[str, list[Any]] = {}
    values: dict[str, Any] = {}
    for name in _WIRE:
        if name not in sent:
            continue
        new = getattr(body, name)
        new = new.value if isinstance(new, Enum) else new
        old = getattr(task, name)
        if new != old:
            changes[_WIRE[name]] = [old, new]
            values[name] = new
    if not changes:
        return task

    if "assignee_id" in values and values["assignee_id"] is not None:
        await _require_eligible(session, task.project_id, values["assignee_id"])
    if values.get("status") == DONE:
        blockers = await repo.open_blockers(task.id)
        if blockers:
            raise TaskBlocked(blockers)
    stamp = now()
    if "status" in values:
        if values["status"] == DONE:
            values["completed_at"] = stamp
        elif task.status == DONE:
            values["completed_at"] = None
    values["version"] = task.version + 1
    values["updated_at"] = stamp
    await repo.update_task(task.id, values)
    previous = task
    task = dataclasses.replace(task, **values)

    await _emit(session, task, events.TaskUpdated(
        project_id=task.project_id, changes=changes))
    # Derived, for consumers that react to one kind of change; task.updated (the audited
    # event) carries every changed field, assigneeId and status included.
    if "assigneeId" in changes:
        await _emit(session, task, events.TaskAssigned(
            project_id=task.project_id, assignee_id=task.assignee_id,
            previous_assignee_id=previous.assignee_id), audited=False)
    if "status" in changes:
        await _emit(session, task, events.TaskStatusChanged(
            project_id=task.project_id, from_=previous.status, to=task.status), audited=False)
    return task


async def delete_task(
    session: AsyncSession, auth: AuthContext, task_id: UUID, *, if_match: str | None = None
) -> None:
    """``If-Match`` is checked against the row locked for the delete, as PATCH does."""
    task, access = await _visible_task(session, auth, task_id)
    if not task_may(access, TaskAction.DELETE):
        raise await _deny(session, auth, TaskAction.DELETE, "task", task.id)
    repo = TaskRepository(session, auth.tenant_id)
    # Exclusive: an edge being added to this task elsewhere must not outlive it. Taken
    # before the DELETE locks the row, the same order every writer of the graph uses.
    await repo.lock_graph(task.project_id)
    if if_match is not None:
        current = await repo.get(task.id, for_update=True)
        if current is None:
            raise TaskNotFound()
        check_if_match(if_match, current.version, resource="task")
    await repo.delete_task(task.id)
    await _emit(session, task, events.TaskDeleted(project_id=task.project_id, title=task.title))


async def add_dependency(
    session: AsyncSession, auth: AuthContext, task_id: UUID, depends_on_id: UUID
) -> None:
    """Idempotent. The check for a cycle and the insert run under the project's graph lock,
    so two requests adding A→B and B→A at once are decided one after the other. A DONE
    task may depend on DONE or CANCELLED tasks only (409 naming the open one)."""
    # The project locked: its deletion, consumed mid-request, would delete the two tasks
    # under the edge's foreign keys.
    task, access = await _visible_task(session, auth, task_id, lock_project=True)
    if not task_may(access, TaskAction.MANAGE_DEPENDENCIES):
        raise await _deny(session, auth, TaskAction.MANAGE_DEPENDENCIES, "task", task.id)
    if depends_on_id == task.id:
        raise InvalidDependency("A task cannot depend on itself.")
    repo = TaskRepository(session, auth.tenant_id)
    await repo.lock_graph(task.project_id)
    found = await repo.nodes([task.id, depends_on_id])
    if task.id not in found:
        raise TaskNotFound()
    _check_dependency(found.get(depends_on_id), depends_on_id, task.project_id)
    if await repo.edge_exists(task.id, depends_on_id):
        return
    if found[task.id].status == DONE:
        # DONE needs blocked == false, so a DONE task takes closed dependencies only. Under
        # the graph lock no task becomes DONE (that takes it too); FOR SHARE keeps the
        # dependency closed until this commits. (It may reopen afterwards: reopening a
        # blocker does not reopen the tasks that depend on it.)
        dependency = (await repo.nodes([depends_on_id], share=True)).get(depends_on_id)
        if dependency is None:
            raise TaskNotFound(f"No task {depends_on_id}.")
        if dependency.status not in CLOSED_STATUSES:
            raise TaskBlocked(
                [depends_on_id],
                detail=f"The task is DONE and {depends_on_id} is open: depending on it would "
                "make a DONE task blocked. Reopen the task or close that one first.",
                field="dependsOnId",
            )
    path = await repo.path_between(depends_on_id, task.id)
    if path is not None:
        raise DependencyCycle([task.id, *path])
    await repo.add_edges(task.project_id, task.id, [depends_on_id])
    await _emit(session, task, events.DependencyAdded(
        project_id=task.project_id, depends_on_id=depends_on_id))


async def remove_dependency(
    session: AsyncSession, auth: AuthContext, task_id: UUID, depends_on_id: UUID
) -> None:
    task, access = await _visible_task(session, auth, task_id)
    if not task_may(access, TaskAction.MANAGE_DEPENDENCIES):
        raise await _deny(session, auth, TaskAction.MANAGE_DEPENDENCIES, "task", task.id)
    if not await TaskRepository(session, auth.tenant_id).remove_edge(task.id, depends_on_id):
        raise DependencyNotFound()
    await _emit(session, task, events.DependencyRemoved(
        project_id=task.project_id, depends_on_id=depends_on_id))


# ---- helpers ---------------------------------------------------------------------------------
async def _project(session: AsyncSession, auth: AuthContext, project_id: UUID) -> ProjectAccess:
    return await project_access(session, auth, project_id)


async def _visible_task(
    session: AsyncSession, auth: AuthContext, task_id: UUID, *, for_update: bool = False,
    lock_project: bool = False,
) -> tuple[TaskRecord, ProjectAccess]:
    """The task and the caller's rights on its project; 404 when either is invisible."""
    task = await TaskRepository(session, auth.tenant_id).get(task_id, for_update=for_update)
    if task is None:
        raise TaskNotFound()
    try:
        access = await project_access(session, auth, task.project_id, lock=lock_project)
    except NotFound as exc:
        raise TaskNotFound() from exc
    return task, access


def _check_dependency(found: Any, dep_id: UUID, project_id: UUID) -> None:
    if found is None:
        raise TaskNotFound(f"No task {dep_id}.")
    if found.project_id != project_id:
        raise InvalidDependency("A task can only depend on tasks of its own project.")


async def _require_eligible(session: AsyncSession, project_id: UUID, user_id: UUID) -> None:
    """An active member (or the owner), whose membership stays locked until the commit: a
    concurrent removal waits for this write, then unassigns them through its event."""
    if not await active_user_ids(session, {user_id}) or not await is_project_member(
        session, project_id, user_id, lock=True
    ):
        raise IneligibleAssignee()


async def _deny(
    session: AsyncSession, auth: AuthContext, action: TaskAction, subject_type: str,
    subject_id: UUID,
) -> Forbidden:
    """Record the denial (authz.denied, kept although the request fails) and return the
    error to raise."""
    return await authz.deny(session, auth, action.value, subject_type=subject_type,
                            subject_id=subject_id,
                            detail=f"You may not perform {action.value} here.")


async def _emit(session: AsyncSession, task: TaskRecord, event: EventData,
                *, audited: bool = True) -> None:
    await emit(session, event, subject_id=task.id, audited=audited)

