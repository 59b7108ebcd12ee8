"""Projects' public face: the only module other services may import.

Tasks asks here whether a caller may read a project or write its tasks, and which
projects a caller can see; it never reads projects' tables itself.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.identity.api import AuthContext
from pantherahive.domains.projects.errors import ProjectNotFound
from pantherahive.domains.projects.permissions import ProjectAction, ProjectRole, project_may
from pantherahive.domains.projects.repository import ProjectRepository

__all__ = [
    "ProjectAccess",
    "ProjectRole",
    "existing_project_ids",
    "is_project_member",
    "project_access",
    "readable_project_ids",
]


@dataclass(frozen=True, slots=True)
class ProjectAccess:
    project_id: UUID
    role: ProjectRole | None  # the caller's membership role; None for a non-member ADMIN
    can_read: bool  # member, owner or ADMIN
    can_write_tasks: bool  # OWNER, EDITOR, or ADMIN


async def project_access(
    session: AsyncSession, auth: AuthContext, project_id: UUID, *, lock: bool = False
) -> ProjectAccess:
    """The caller's rights on a project, in one query.

    Raises ``NotFound`` (404) when the project does not exist, belongs to another tenant or
    is invisible to the caller — the three are indistinguishable on purpose.

    ``lock``: for a write that must not outlive the project (a new task, a new edge). The
    project row is held FOR KEY SHARE until the transaction ends, so a concurrent delete
    either waits for this write to commit (and its ``project.deleted`` then removes it) or
    committed first (and this is 404). Changes to the project also wait (they lock the row
    FOR UPDATE).
    """
    found, raw_role = await ProjectRepository(session, auth.tenant_id).access_role(
        project_id, auth.user_id, key_share=lock
    )
    role = ProjectRole(raw_role) if raw_role else None
    if not found or not project_may(auth.role, role, ProjectAction.READ):
        raise ProjectNotFound()
    return ProjectAccess(
        project_id=project_id,
        role=role,
        can_read=True,
        can_write_tasks=project_may(auth.role, role, ProjectAction.WRITE_TASKS),
    )


async def is_project_member(
    session: AsyncSession, project_id: UUID, user_id: UUID, *, lock: bool = False
) -> bool:
    """True for the project's owner and any of its members (of the transaction's tenant).

    ``lock``: for a write that names the user (an assignee). Their membership row (the owner
    has one too) is held FOR KEY SHARE until the transaction ends, so removing them — or
    deleting the project, which deletes its members first — waits for this write, and its
    ``project.member_removed`` then unassigns them; or the removal committed first and this
    is False."""
    repo = ProjectRepository(session)
    if lock:
        return await repo.lock_membership(project_id, user_id)
    return await repo.is_member(project_id, user_id)


async def readable_project_ids(session: AsyncSession, auth: AuthContext) -> list[UUID] | None:
    """None means every project of the tenant (ADMIN); otherwise the ids the caller sees."""
    if project_may(auth.role, None, ProjectAction.READ):
        return None
    return await ProjectRepository(session, auth.tenant_id).member_project_ids(auth.user_id)


async def existing_project_ids(session: AsyncSession, project_ids: Collection[UUID]) -> set[UUID]:
    """Those of ``project_ids`` that name a project of the transaction's tenant now.

    A deleted project's tasks outlive it until tasks consumes ``project.deleted`` (forever,
    if that event dead-letters); a caller who reads "every project" (``None`` above) asks
    here which of the projects it is about to show still exist."""
    if not project_ids:
        return set()
    return await ProjectRepository(session).existing_ids(project_ids)
