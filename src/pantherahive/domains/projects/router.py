"""Projects' HTTP routes: thin — authenticate, call one service function, shape the answer."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from pantherahive.core.etags import etag
from pantherahive.core.pagination import DEFAULT_LIMIT
from pantherahive.core.schemas import Page
from pantherahive.domains.projects import service
from pantherahive.domains.projects.schemas import (
    MemberPut,
    MemberRead,
    ProjectCreate,
    ProjectRead,
    ProjectStatus,
    ProjectUpdate,
)
from pantherahive.domains.projects.tables import Project
from pantherahive.infra.http.conditional import IfMatch
from pantherahive.infra.http.listing import Cursor, Limit
from pantherahive.infra.http.paths import uuid_path
from pantherahive.infra.http.problems import problem_responses as _problems
from pantherahive.infra.http.unit_of_work import RequestSession
from pantherahive.infra.security.dependency import CurrentAuth
from pantherahive.infra.security.scopes import Scope, scoped

ProjectId = Annotated[UUID, uuid_path("projectId", "The project.")]
UserId = Annotated[UUID, uuid_path("userId", "The user.")]

router = APIRouter(
    prefix="/v1/projects", tags=["projects"],
    dependencies=[scoped(Scope.PROJECTS_READ, Scope.PROJECTS_WRITE)],
)


def _read(project: Project, response: Response) -> ProjectRead:
    response.headers["ETag"] = etag(project.version)
    return ProjectRead.model_validate(project)


@router.get("", responses=_problems(401, 422))
async def list_projects(
    auth: CurrentAuth,
    session: RequestSession,
    status: ProjectStatus | None = None,
    owner_id: Annotated[UUID | None, Query(alias="ownerId")] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[ProjectRead]:
    """The projects the caller can see (ADMIN: all of the tenant's), oldest first.

    `q` is a case-insensitive prefix of the name.
    """
    rows, next_cursor = await service.list_projects(
        session, auth, status=status, owner_id=owner_id, q=q, cursor=cursor, limit=limit
    )
    return Page[ProjectRead].of(rows, next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED, responses=_problems(401, 403, 409, 422))
async def create_project(
    body: ProjectCreate, auth: CurrentAuth, session: RequestSession, response: Response
) -> ProjectRead:
    """Create a project (ADMIN or MANAGER). `ownerId` defaults to the caller and must be an
    ACTIVE user of the tenant (else 422); the owner is listed among the members as OWNER.
    Send `Idempotency-Key` to make retries safe."""
    project = await service.create_project(session, auth, body=body)
    response.headers["Location"] = f"/v1/projects/{project.id}"
    return _read(project, response)


@router.get("/{projectId:uuid}", responses=_problems(401, 404))
async def get_project(
    project_id: ProjectId, auth: CurrentAuth, session: RequestSession, response: Response
) -> ProjectRead:
    """One project the caller can see (owner, member, ADMIN); any other id is 404. The
    `ETag` header carries the version for `If-Match`."""
    return _read(await service.get_project(session, auth, project_id), response)


@router.patch("/{projectId:uuid}", responses=_problems(401, 403, 404, 412, 422))
async def update_project(
    project_id: ProjectId,
    body: ProjectUpdate,
    auth: CurrentAuth,
    session: RequestSession,
    response: Response,
    if_match: IfMatch = None,
) -> ProjectRead:
    """Partial update (owner or ADMIN). With `If-Match`, a stale version is 412; without
    it the last write wins. Changing `ownerId` keeps the previous owner as an EDITOR, or
    removes them from the project if they are no longer ACTIVE."""
    project = await service.update_project(session, auth, project_id, body=body, if_match=if_match)
    return _read(project, response)


@router.delete(
    "/{projectId:uuid}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_problems(401, 403, 404, 412),
)
async def delete_project(
    project_id: ProjectId, auth: CurrentAuth, session: RequestSession, if_match: IfMatch = None
) -> None:
    """Delete a project and its members (owner or ADMIN); its tasks go with it."""
    await service.delete_project(session, auth, project_id, if_match=if_match)


@router.get("/{projectId:uuid}/members", responses=_problems(401, 404, 422))
async def list_members(
    project_id: ProjectId,
    auth: CurrentAuth,
    session: RequestSession,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[MemberRead]:
    """The project's members, the owner (role OWNER) included, in the order they joined."""
    rows, next_cursor = await service.list_members(
        session, auth, project_id, cursor=cursor, limit=limit
    )
    return Page[MemberRead].of(rows, next_cursor)


@router.put("/{projectId:uuid}/members/{userId:uuid}", responses=_problems(401, 403, 404, 409, 422))
async def put_member(
    project_id: ProjectId,
    user_id: UserId,
    body: MemberPut,
    auth: CurrentAuth,
    session: RequestSession,
) -> MemberRead:
    """Add an ACTIVE user of the tenant as EDITOR or VIEWER, or change their role (owner or
    ADMIN). The owner's own membership is 409: it follows `ownerId`."""
    member = await service.put_member(session, auth, project_id, user_id, body=body)
    return MemberRead.model_validate(member)


@router.delete(
    "/{projectId:uuid}/members/{userId:uuid}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_problems(401, 403, 404, 409),
)
async def remove_member(
    project_id: ProjectId, user_id: UserId, auth: CurrentAuth, session: RequestSession
) -> None:
    """Remove a member (owner or ADMIN). The owner cannot be removed (409)."""
    await service.remove_member(session, auth, project_id, user_id)
