"""Tasks' HTTP routes: thin — authenticate, call one service function, shape the answer."""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status

from pantherahive.core import json
from pantherahive.core.etags import etag
from pantherahive.core.naming import camel
from pantherahive.core.pagination import DEFAULT_LIMIT
from pantherahive.core.schemas import IsoDate, Page
from pantherahive.domains.tasks import service
from pantherahive.domains.tasks.repository import TASK_FIELDS, TaskFilter, TaskRecord
from pantherahive.domains.tasks.schemas import (
    Schedule,
    TaskCreate,
    TaskPriority,
    TaskRead,
    TaskSort,
    TaskStatus,
    TaskUpdate,
)
from pantherahive.infra.http.conditional import IfMatch
from pantherahive.infra.http.listing import Cursor, Limit
from pantherahive.infra.http.paths import uuid_path
from pantherahive.infra.http.problems import problem_responses as _problems
from pantherahive.infra.http.unit_of_work import RequestSession
from pantherahive.infra.security.dependency import CurrentAuth
from pantherahive.infra.security.scopes import Scope, scoped

TaskId = Annotated[UUID, uuid_path("taskId", "The task.")]
ProjectId = Annotated[UUID, uuid_path("projectId", "The project.")]
DependsOnId = Annotated[UUID, uuid_path("dependsOnId", "The task it depends on.")]

router = APIRouter(tags=["tasks"], dependencies=[scoped(Scope.TASKS_READ, Scope.TASKS_WRITE)])


@dataclass(frozen=True, slots=True)
class ListQuery:
    filters: TaskFilter
    sort: TaskSort
    cursor: str | None
    limit: int


async def list_query(
    status: Annotated[
        list[TaskStatus] | None, Query(description="Repeatable: any of these statuses.")
    ] = None,
    assignee_id: Annotated[UUID | None, Query(alias="assigneeId")] = None,
    priority: Annotated[
        list[TaskPriority] | None, Query(description="Repeatable: any of these priorities.")
    ] = None,
    label: Annotated[str | None, Query(min_length=1, max_length=50)] = None,
    due_before: Annotated[
        IsoDate | None, Query(alias="dueBefore", description="Inclusive.")
    ] = None,
    due_after: Annotated[IsoDate | None, Query(alias="dueAfter", description="Inclusive.")] = None,
    blocked: bool | None = None,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=200,
              description="Full text over title and description (web search syntax)."),
    ] = None,
    sort: TaskSort = TaskSort.CREATED,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> ListQuery:
    return ListQuery(
        filters=TaskFilter(
            statuses=[s.value for s in status or ()],
            priorities=[p.value for p in priority or ()],
            assignee_id=assignee_id,
            label=label,
            due_before=due_before,
            due_after=due_after,
            blocked=blocked,
            q=q,
        ),
        sort=sort,
        cursor=cursor,
        limit=limit,
    )


Listing = Annotated[ListQuery, Depends(list_query)]


_DOCUMENT_KEYS = tuple(camel(name) for name in TASK_FIELDS)
_document_values = attrgetter(*TASK_FIELDS)


def _document(task: TaskRecord) -> dict[str, Any]:
    """The task as ``TaskRead`` shows it (see core/json.py for why not through the model):
    the record's fields under their camelCase names."""
    return dict(zip(_DOCUMENT_KEYS, _document_values(task), strict=True))


def _page(rows: list[TaskRecord], next_cursor: str | None) -> Response:
    page = {"items": [_document(row) for row in rows], "nextCursor": next_cursor}
    return Response(json.dumps(page), media_type=json.MEDIA_TYPE)


def _one(task: TaskRecord, status_code: int = 200, **headers: str) -> Response:
    return Response(
        json.dumps(_document(task)),
        status_code=status_code,
        media_type=json.MEDIA_TYPE,
        headers={"ETag": etag(task.version), **headers},
    )


@router.get(
    "/v1/projects/{projectId:uuid}/tasks",
    response_model=Page[TaskRead],
    responses=_problems(401, 404, 422),
)
async def list_project_tasks(
    project_id: ProjectId, query: Listing, auth: CurrentAuth, session: RequestSession
) -> Response:
    """A project's tasks (any reader of the project). Filters combine with AND; `status`
    and `priority` repeat for "any of". Sorted by `sort`, ties by id; the cursor only
    continues the sort it came from."""
    rows, next_cursor = await service.list_project_tasks(
        session, auth, project_id, filters=query.filters, sort=query.sort,
        cursor=query.cursor, limit=query.limit,
    )
    return _page(rows, next_cursor)


@router.post(
    "/v1/projects/{projectId:uuid}/tasks",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskRead,
    responses=_problems(401, 403, 404, 409, 422),
)
async def create_task(
    project_id: ProjectId, body: TaskCreate, auth: CurrentAuth, session: RequestSession
) -> Response:
    """Create a task (the project's owner, EDITORs, ADMIN). The assignee must be an active
    member or the owner of the project (422); `dependsOn` names tasks of the same project."""
    task = await service.create_task(session, auth, project_id, body=body)
    return _one(task, status.HTTP_201_CREATED, Location=f"/v1/tasks/{task.id}")


def schedule_max_tasks(request: Request) -> int:
    limit: int = request.app.state.platform.settings.schedule_max_tasks
    return limit


@router.get("/v1/projects/{projectId:uuid}/schedule", responses=_problems(401, 404, 409))
async def project_schedule(
    project_id: ProjectId,
    auth: CurrentAuth,
    session: RequestSession,
    max_tasks: Annotated[int, Depends(schedule_max_tasks)],
) -> Schedule:
    """The project's tasks in an order that respects dependencies (every task after the
    tasks it depends on), each with its depth (longest chain of dependencies below it), and
    the critical path: the longest chain, first task first. A project with more tasks than
    the server's `schedule_max_tasks` setting (default 5,000) is 409
    (`/schedule-too-large`, `maxTasks`)."""
    return await service.project_schedule(session, auth, project_id, max_tasks=max_tasks)


@router.get(
    "/v1/users/me/tasks", response_model=Page[TaskRead], responses=_problems(401, 422)
)
async def list_my_tasks(query: Listing, auth: CurrentAuth, session: RequestSession) -> Response:
    """Tasks assigned to the caller across the projects the caller can see; the same
    filters and sorts as a project's list (`assigneeId` is always the caller)."""
    rows, next_cursor = await service.list_my_tasks(
        session, auth, filters=query.filters, sort=query.sort, cursor=query.cursor,
        limit=query.limit,
    )
    return _page(rows, next_cursor)


@router.get("/v1/tasks/{taskId:uuid}", response_model=TaskRead, responses=_problems(401, 404))
async def get_task(task_id: TaskId, auth: CurrentAuth, session: RequestSession) -> Response:
    """One task (any reader of its project). The `ETag` is its version, for `If-Match`."""
    return _one(await service.get_task(session, auth, task_id))


@router.patch(
    "/v1/tasks/{taskId:uuid}",
    response_model=TaskRead,
    responses=_problems(401, 403, 404, 409, 412, 422),
)
async def update_task(
    task_id: TaskId,
    body: TaskUpdate,
    auth: CurrentAuth,
    session: RequestSession,
    if_match: IfMatch = None,
) -> Response:
    """Partial update (owner, EDITORs, ADMIN); the assignee may change `status` alone.
    `If-Match` with a stale ETag is 412. Moving to DONE while a dependency is open is 409
    with `blockers`; leaving DONE clears `completedAt`."""
    task = await service.update_task(session, auth, task_id, body=body, if_match=if_match)
    return _one(task)


@router.delete(
    "/v1/tasks/{taskId:uuid}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_problems(401, 403, 404, 412, 422),
)
async def delete_task(
    task_id: TaskId, auth: CurrentAuth, session: RequestSession, if_match: IfMatch = None
) -> None:
    """Delete a task (owner, EDITORs, ADMIN); its dependency edges go with it. With
    `If-Match`, a stale ETag is 412."""
    await service.delete_task(session, auth, task_id, if_match=if_match)


@router.put(
    "/v1/tasks/{taskId:uuid}/dependencies/{dependsOnId:uuid}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_problems(401, 403, 404, 409, 422),
)
async def add_dependency(
    task_id: TaskId, depends_on_id: DependsOnId, auth: CurrentAuth, session: RequestSession
) -> None:
    """Make the task depend on another task of the same project (422 otherwise; itself is
    422). An edge that would close a cycle is 409 naming the cycle (`cycle`: ids); a DONE
    task may only depend on DONE or CANCELLED tasks (else 409 with `blockers`). Adding an
    existing edge changes nothing."""
    await service.add_dependency(session, auth, task_id, depends_on_id)


@router.delete(
    "/v1/tasks/{taskId:uuid}/dependencies/{dependsOnId:uuid}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_problems(401, 403, 404),
)
async def remove_dependency(
    task_id: TaskId, depends_on_id: DependsOnId, auth: CurrentAuth, session: RequestSession
) -> None:
    """Remove a dependency; 404 if the task does not depend on that task."""
    await service.remove_dependency(session, auth, task_id, depends_on_id)
