"""All of projects' SQL. Row-level security scopes every query to the transaction's tenant;
the statements name it too (``TenantRepository``): fixed SQL has it as ``$1``."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, and_, exists, func, tuple_

from pantherahive.domains.projects.tables import Member, Project
from pantherahive.infra.db.repository import TenantRepository

# Asked on every task request (through projects' api): fixed SQL, see infra/db/direct.py.
_ACCESS_ROLE = (
    "SELECT p.id, m.role FROM projects.projects p"
    " LEFT JOIN projects.members m ON m.project_id = p.id AND m.user_id = $3"
    " WHERE p.tenant_id = $1 AND p.id = $2"
)
_ACCESS_ROLE_KEY_SHARE = _ACCESS_ROLE + " FOR KEY SHARE OF p"
_LOCK_MEMBERSHIP = (
    "SELECT 1 FROM projects.members"
    " WHERE tenant_id = $1 AND project_id = $2 AND user_id = $3 FOR KEY SHARE"
)
_IS_MEMBER = (
    "SELECT 1 FROM projects.projects p"
    " WHERE p.tenant_id = $1 AND p.id = $2 AND (p.owner_id = $3 OR EXISTS"
    " (SELECT 1 FROM projects.members m WHERE m.project_id = p.id AND m.user_id = $3))"
)


class ProjectRepository(TenantRepository):
    async def add(self, *rows: Project | Member) -> None:
        self.session.add_all(rows)
        await self.session.flush()

    async def access(
        self, project_id: UUID, user_id: UUID, *, for_update: bool = False
    ) -> tuple[Project, str | None] | None:
        """The project and the user's membership role in one round trip.

        ``for_update`` locks the project row (not the membership): every change to a project
        or its members serializes on it, which makes ``If-Match`` checks and member upserts
        race-free.
        """
        stmt = (
            self.select(Project, Project, Member.role)
            .outerjoin(Member, and_(Member.project_id == Project.id, Member.user_id == user_id))
            .where(Project.id == project_id)
        )
        if for_update:
            stmt = stmt.with_for_update(of=Project)
        row = (await self.session.execute(stmt)).first()
        return (row[0], row[1]) if row else None

    async def access_role(
        self, project_id: UUID, user_id: UUID, *, key_share: bool = False
    ) -> tuple[bool, str | None]:
        """(the project exists, the user's membership role) without loading the project.

        ``key_share`` locks the project row FOR KEY SHARE until the transaction ends: the
        row cannot be deleted meanwhile (a delete's FOR UPDATE waits)."""
        sql = _ACCESS_ROLE_KEY_SHARE if key_share else _ACCESS_ROLE
        row = await self.fetchrow(sql, project_id, user_id)
        return (row is not None, row["role"] if row else None)

    async def is_member(self, project_id: UUID, user_id: UUID) -> bool:
        return await self.fetchrow(_IS_MEMBER, project_id, user_id) is not None

    async def lock_membership(self, project_id: UUID, user_id: UUID) -> bool:
        """Whether the user has a membership row (the owner has one too), locked FOR KEY
        SHARE until the transaction ends, so it cannot be deleted meanwhile."""
        row = await self.fetchrow(_LOCK_MEMBERSHIP, project_id, user_id)
        return row is not None

    async def existing_ids(self, project_ids: Collection[UUID]) -> set[UUID]:
        stmt = self.select(Project, Project.id).where(Project.id.in_(project_ids))
        return set((await self.session.execute(stmt)).scalars())

    async def member_project_ids(self, user_id: UUID) -> list[UUID]:
        stmt = self.select(Member, Member.project_id).where(Member.user_id == user_id)
        return list((await self.session.execute(stmt)).scalars())

    def list_query(
        self,
        *,
        visible_to: UUID | None,
        status: str | None,
        owner_id: UUID | None,
        q: str | None,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> Select[Any]:
        stmt = self.select(Project)
        if visible_to is not None:
            stmt = stmt.where(
                exists().where(Member.project_id == Project.id, Member.user_id == visible_to)
            )
        if status:
            stmt = stmt.where(Project.status == status)
        if owner_id:
            stmt = stmt.where(Project.owner_id == owner_id)
        if q:
            stmt = stmt.where(func.lower(Project.name).like(_prefix_pattern(q), escape="\\"))
        if after is not None:
            stmt = stmt.where(tuple_(Project.created_at, Project.id) > tuple_(*after))
        return stmt.order_by(Project.created_at, Project.id).limit(limit)

    async def list_projects(self, **kwargs: Any) -> list[Project]:
        return list((await self.session.execute(self.list_query(**kwargs))).scalars())

    async def delete_project(self, project: Project) -> list[UUID]:
        """Delete the project (its members go by cascade); returns the former members."""
        members = await self.session.execute(
            self.delete(Member).where(Member.project_id == project.id).returning(Member.user_id)
        )
        member_ids = list(members.scalars())
        await self.session.delete(project)
        await self.session.flush()
        return member_ids

    # members
    async def get_member(self, project_id: UUID, user_id: UUID) -> Member | None:
        stmt = self.select(Member).where(
            Member.project_id == project_id, Member.user_id == user_id
        )
        member: Member | None = (await self.session.execute(stmt)).scalar_one_or_none()
        return member

    async def list_members(
        self, project_id: UUID, *, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[Member]:
        stmt = self.select(Member).where(Member.project_id == project_id)
        if after is not None:
            stmt = stmt.where(tuple_(Member.added_at, Member.user_id) > tuple_(*after))
        stmt = stmt.order_by(Member.added_at, Member.user_id).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def remove_member(self, member: Member) -> None:
        await self.session.delete(member)
        await self.session.flush()

    async def memberships_of(self, user_id: UUID, *, exclude_role: str) -> list[Member]:
        stmt = (
            self.select(Member)
            .where(Member.user_id == user_id, Member.role != exclude_role)
            .order_by(Member.project_id)
            .with_for_update()
        )
        return list((await self.session.execute(stmt)).scalars())


def _prefix_pattern(q: str) -> str:
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
