"""Projects' rules: visibility, permissions, versions and events. Services never commit;
the edge does.

Every change to a project or its members first locks the project row, so an ``If-Match``
check and the write it guards are atomic, and member upserts cannot interleave.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.clock import now
from pantherahive.core.errors import FieldError, ValidationFailed
from pantherahive.core.etags import check_if_match
from pantherahive.core.naming import camel
from pantherahive.core.pagination import cut_time_id_page, decode_time_id_cursor
from pantherahive.core.schemas import never_null, refuse_nulls
from pantherahive.domains.identity.api import AuthContext, active_user_ids
from pantherahive.domains.projects import events
from pantherahive.domains.projects.errors import (
    MemberNotFound,
    OwnerMembership,
    ProjectNotFound,
    UserNotFound,
)
from pantherahive.domains.projects.permissions import ProjectAction, ProjectRole, project_may
from pantherahive.domains.projects.repository import ProjectRepository
from pantherahive.domains.projects.schemas import (
    MemberPut,
    ProjectCreate,
    ProjectRead,
    ProjectStatus,
    ProjectUpdate,
)
from pantherahive.domains.projects.tables import Member, Project
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.security.authz import deny

# What a PATCH may not set to null: the fields the project's document never shows null.
_NOT_NULL = never_null(ProjectUpdate, ProjectRead)


async def _authorize(
    session: AsyncSession,
    auth: AuthContext,
    project_id: UUID,
    action: ProjectAction,
    *,
    for_update: bool = False,
) -> tuple[Project, ProjectRole | None]:
    """The project if the caller may ``action`` it: invisible is 404, visible but not
    allowed is 403 (and an ``authz.denied`` event)."""
    repo = ProjectRepository(session, auth.tenant_id)
    found = await repo.access(project_id, auth.user_id, for_update=for_update)
    if found is None:
        raise ProjectNotFound()
    project, raw_role = found
    membership = ProjectRole(raw_role) if raw_role else None
    if not project_may(auth.role, membership, ProjectAction.READ):
        raise ProjectNotFound()
    if not project_may(auth.role, membership, action):
        raise await deny(
            session, auth, action.value, subject_type="project", subject_id=project.id,
            detail=f"You may not perform {action.value} on this project.",
            data={"projectRole": membership.value if membership else None},
        )
    return project, membership


def _check_dates(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and end < start:
        raise ValidationFailed(
            "endDate must not be before startDate.",
            errors=[FieldError("endDate", "must be on or after startDate")],
        )


async def _is_active_user(session: AsyncSession, auth: AuthContext, user_id: UUID) -> bool:
    if user_id == auth.user_id:
        return True  # the caller was checked ACTIVE by authentication in this transaction
    return user_id in await active_user_ids(session, {user_id})


def _owner_invalid() -> ValidationFailed:
    return ValidationFailed(
        "ownerId must be an ACTIVE user of this tenant.",
        errors=[FieldError("ownerId", "not an active user of this tenant")],
    )


# ---- projects ---------------------------------------------------------------------------
async def create_project(
    session: AsyncSession, auth: AuthContext, *, body: ProjectCreate
) -> Project:
    if not project_may(auth.role, None, ProjectAction.CREATE):
        raise await deny(
            session, auth, ProjectAction.CREATE.value, subject_type="tenant",
            subject_id=auth.tenant_id,
            detail=f"You may not perform {ProjectAction.CREATE.value} on this project.",
            data={"projectRole": None},
        )
    owner_id = body.owner_id or auth.user_id
    if not await _is_active_user(session, auth, owner_id):
        raise _owner_invalid()
    _check_dates(body.start_date, body.end_date)
    at = now()
    project = Project(
        **_column_values(body, exclude={"owner_id"}),
        id=uuid4(),
        tenant_id=auth.tenant_id,
        owner_id=owner_id,
        version=1,
        created_at=at,
        updated_at=at,
    )
    owner = Member(
        project_id=project.id,
        user_id=owner_id,
        tenant_id=auth.tenant_id,
        role=ProjectRole.OWNER.value,
        added_at=at,
    )
    repo = ProjectRepository(session, auth.tenant_id)
    await repo.add(project)  # its own flush: the members row references it
    await repo.add(owner)
    await emit(
        session,
        events.ProjectCreated.model_validate(project, from_attributes=True),
        subject_id=project.id,
    )
    return project


async def get_project(session: AsyncSession, auth: AuthContext, project_id: UUID) -> Project:
    project, _ = await _authorize(session, auth, project_id, ProjectAction.READ)
    return project


async def list_projects(
    session: AsyncSession,
    auth: AuthContext,
    *,
    status: ProjectStatus | None,
    owner_id: UUID | None,
    q: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Project], str | None]:
    """The projects the caller can see, oldest first (ties by id), keyset-paginated."""
    sees_all = project_may(auth.role, None, ProjectAction.READ)
    rows = await ProjectRepository(session, auth.tenant_id).list_projects(
        visible_to=None if sees_all else auth.user_id,
        status=status.value if status else None,
        owner_id=owner_id,
        q=q,
        after=decode_time_id_cursor(cursor),
        limit=limit + 1,
    )
    return cut_time_id_page(rows, limit, lambda project: (project.created_at, project.id))


async def update_project(
    session: AsyncSession,
    auth: AuthContext,
    project_id: UUID,
    *,
    body: ProjectUpdate,
    if_match: str | None,
) -> Project:
    project, _ = await _authorize(session, auth, project_id, ProjectAction.UPDATE, for_update=True)
    check_if_match(if_match, project.version, resource="project")
    sent = body.model_fields_set
    refuse_nulls(body, _NOT_NULL)
    start = body.start_date if "start_date" in sent else project.start_date
    end = body.end_date if "end_date" in sent else project.end_date
    _check_dates(start, end)

    sent_values = _column_values(body, include=sent)
    changes: dict[str, list[Any]] = {}
    for field, new in sent_values.items():
        old = getattr(project, field)
        if new != old:
            changes[camel(field)] = [_json(old), _json(new)]
    if not changes:
        return project
    if "ownerId" in changes:
        assert body.owner_id is not None
        if not await _is_active_user(session, auth, body.owner_id):
            raise _owner_invalid()
        await _transfer_ownership(session, auth, project, body.owner_id)
    for field, new in sent_values.items():
        if camel(field) in changes:
            setattr(project, field, new)
    project.version += 1
    project.updated_at = now()
    await session.flush()
    await emit(session, events.ProjectUpdated(changes=changes), subject_id=project.id)
    return project


async def _transfer_ownership(
    session: AsyncSession, auth: AuthContext, project: Project, new_owner: UUID
) -> None:
    """The old owner stays on the project as an EDITOR if they are still ACTIVE; the new
    owner's membership becomes OWNER (created if they were not a member). The membership
    events are derived: the audited event is project.updated, whose changes carry ownerId.

    An old owner who is no longer ACTIVE (``user.deactivated`` leaves owners in place until
    this transfer) leaves the project instead, with the ``project.member_removed`` a removal
    emits, so tasks unassigns them; keeping them as EDITOR would re-admit a user that
    ``PUT /members/{userId}`` refuses."""
    repo = ProjectRepository(session, auth.tenant_id)
    old = await repo.get_member(project.id, project.owner_id)
    if old is not None and not await _is_active_user(session, auth, old.user_id):
        await repo.remove_member(old)
        await emit(
            session,
            events.MemberRemoved(
                user_id=old.user_id, role=ProjectRole.OWNER.value, reason="user.deactivated"
            ),
            subject_id=project.id,
            audited=False,
        )
    elif old is not None:
        old.role = ProjectRole.EDITOR.value
        await _member_event(
            session, project, old.user_id, ProjectRole.OWNER, ProjectRole.EDITOR, audited=False
        )
    member = await repo.get_member(project.id, new_owner)
    if member is None:
        await repo.add(
            Member(
                project_id=project.id,
                user_id=new_owner,
                tenant_id=project.tenant_id,
                role=ProjectRole.OWNER.value,
                added_at=now(),
            )
        )
        await _member_event(session, project, new_owner, None, ProjectRole.OWNER, audited=False)
    else:
        previous = ProjectRole(member.role)
        member.role = ProjectRole.OWNER.value
        await _member_event(
            session, project, new_owner, previous, ProjectRole.OWNER, audited=False
        )
    await session.flush()


async def delete_project(
    session: AsyncSession, auth: AuthContext, project_id: UUID, *, if_match: str | None
) -> None:
    """Delete the project and its members; tasks deletes the project's tasks when it
    consumes ``project.deleted``."""
    project, _ = await _authorize(session, auth, project_id, ProjectAction.DELETE, for_update=True)
    check_if_match(if_match, project.version, resource="project")
    name = project.name
    member_ids = await ProjectRepository(session, auth.tenant_id).delete_project(project)
    await emit(
        session,
        events.ProjectDeleted(name=name, member_ids=sorted(member_ids, key=str)),
        subject_id=project_id,
    )


# ---- members ----------------------------------------------------------------------------
async def list_members(
    session: AsyncSession, auth: AuthContext, project_id: UUID, *, cursor: str | None, limit: int
) -> tuple[list[Member], str | None]:
    await _authorize(session, auth, project_id, ProjectAction.LIST_MEMBERS)
    rows = await ProjectRepository(session, auth.tenant_id).list_members(
        project_id, after=decode_time_id_cursor(cursor), limit=limit + 1
    )
    return cut_time_id_page(rows, limit, lambda member: (member.added_at, member.user_id))


async def put_member(
    session: AsyncSession, auth: AuthContext, project_id: UUID, user_id: UUID, *, body: MemberPut
) -> Member:
    """Add a member or change their role (idempotent: the same role twice changes nothing)."""
    project, _ = await _authorize(
        session, auth, project_id, ProjectAction.MANAGE_MEMBERS, for_update=True
    )
    if user_id == project.owner_id:
        raise OwnerMembership()
    if not await _is_active_user(session, auth, user_id):
        raise UserNotFound()
    repo = ProjectRepository(session, auth.tenant_id)
    role = ProjectRole(body.role)
    member = await repo.get_member(project_id, user_id)
    if member is None:
        member = Member(
            project_id=project_id,
            user_id=user_id,
            tenant_id=project.tenant_id,
            role=role.value,
            added_at=now(),
        )
        await repo.add(member)
        await _member_event(session, project, user_id, None, role)
    elif member.role != role.value:
        previous = ProjectRole(member.role)
        member.role = role.value
        await session.flush()
        await _member_event(session, project, user_id, previous, role)
    return member


async def remove_member(
    session: AsyncSession, auth: AuthContext, project_id: UUID, user_id: UUID
) -> None:
    project, _ = await _authorize(
        session, auth, project_id, ProjectAction.MANAGE_MEMBERS, for_update=True
    )
    if user_id == project.owner_id:
        raise OwnerMembership()
    repo = ProjectRepository(session, auth.tenant_id)
    member = await repo.get_member(project_id, user_id)
    if member is None:
        raise MemberNotFound()
    role = ProjectRole(member.role)
    await repo.remove_member(member)
    await _member_event(session, project, user_id, role, None)


async def _member_event(
    session: AsyncSession,
    project: Project,
    user_id: UUID,
    old: ProjectRole | None,
    new: ProjectRole | None,
    *,
    audited: bool = True,
) -> None:
    event: events.MemberAdded | events.MemberRemoved | events.MemberUpdated
    if old is None and new is not None:
        event = events.MemberAdded(user_id=user_id, role=new.value, project_name=project.name)
    elif new is None and old is not None:
        event = events.MemberRemoved(user_id=user_id, role=old.value)
    else:
        assert old is not None
        assert new is not None
        event = events.MemberUpdated(
            user_id=user_id, changes={"role": [old.value, new.value]}
        )
    await emit(session, event, subject_id=project.id, audited=audited)


# ---- consumed events --------------------------------------------------------------------
async def drop_memberships_of(
    session: AsyncSession, *, user_id: UUID, tenant_id: UUID, actor_id: UUID | None
) -> int:
    """A deactivated user leaves every project they do not own (owned projects keep their
    owner until an ADMIN transfers them). Returns how many memberships were removed."""
    repo = ProjectRepository(session, tenant_id)
    removed = await repo.memberships_of(user_id, exclude_role=ProjectRole.OWNER.value)
    for member in removed:
        await repo.remove_member(member)
        await emit(
            session,
            events.MemberRemoved(user_id=user_id, role=member.role, reason="user.deactivated"),
            subject_id=member.project_id,
            tenant_id=tenant_id,
            actor_id=actor_id,
            audited=False,  # follows from user.deactivated, the audited event
        )
    return len(removed)


def _json(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _column_values(body: BaseModel, **fields: Any) -> dict[str, Any]:
    """The request's fields as column values (``include``/``exclude`` as in ``model_dump``):
    the request schema names the columns it writes, so they are not listed again here."""
    values = body.model_dump(**fields)
    return {
        name: value.value if isinstance(value, ProjectStatus) else value
        for name, value in values.items()
    }
