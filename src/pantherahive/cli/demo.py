"""`pantherahive demo`'s work data: two projects with members, 30 tasks with assignees,
labels, due dates and dependency chains (exactly one task blocked).

Everything goes through the services, as a request would, so the outbox events, the audit
trail and the notifications are what the API would have produced. Idempotent: a tenant that
already has the demo projects is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.identity.repository import IdentityRepository, TenantDirectory
from pantherahive.domains.projects import service as projects
from pantherahive.domains.projects.permissions import ProjectRole
from pantherahive.domains.projects.schemas import MemberPut, ProjectCreate
from pantherahive.domains.tasks import service as tasks
from pantherahive.domains.tasks.repository import TaskFilter
from pantherahive.domains.tasks.schemas import TaskCreate, TaskPriority, TaskSort, TaskStatus
from pantherahive.infra.context import begin_context, bind_principal
from pantherahive.infra.db.engine import Database, set_tenant
from pantherahive.infra.security.principal import AuthContext, Role


@dataclass(frozen=True)
class DemoTask:
    title: str
    labels: tuple[str, ...]
    status: TaskStatus = TaskStatus.TODO
    after: int | None = None  # index (in the same project) of the task it depends on


@dataclass(frozen=True)
class DemoProject:
    name: str
    description: str
    owner: str
    members: tuple[tuple[str, ProjectRole], ...]
    tasks: tuple[DemoTask, ...]


_DONE, _DOING, _REVIEW = TaskStatus.DONE, TaskStatus.IN_PROGRESS, TaskStatus.IN_REVIEW
PROJECTS = (
    DemoProject(
        name="Website relaunch",
        description="New marketing site: design, build, content and launch.",
        owner="bob",
        members=(("carol", ProjectRole.EDITOR), ("alice", ProjectRole.EDITOR)),
        tasks=(
            # chain: brief → wireframes → visual design → launch; the launch is the one
            # blocked task (the design is still in progress)
            DemoTask("Write the creative brief", ("design", "docs"), _DONE),
            DemoTask("Wireframe the key pages", ("design",), _DONE, after=0),
            DemoTask("Visual design of the home page", ("design", "frontend"), _DOING, after=1),
            DemoTask("Build the page templates", ("frontend",), after=1),
            DemoTask("Launch the new site", ("infra", "release"), after=2),
            # chain: hosting → CDN → TLS certificates
            DemoTask("Choose a hosting provider", ("infra",), _DONE),
            DemoTask("Set up the CDN", ("infra",), _DONE, after=5),
            DemoTask("Renew the TLS certificates", ("infra", "security"), _REVIEW, after=6),
            DemoTask("Migrate the blog posts", ("content",)),
            DemoTask("Write the new About page", ("content", "docs")),
            DemoTask("Add analytics consent banner", ("frontend", "legal")),
            DemoTask("Fix broken links on the old site", ("bug",), _DONE),
            DemoTask("Compress hero images", ("frontend", "performance")),
            DemoTask("Accessibility audit", ("frontend", "a11y")),
            DemoTask("Redirects from old URLs", ("infra", "seo")),
        ),
    ),
    DemoProject(
        name="Mobile app beta",
        description="First public beta of the iOS and Android apps.",
        owner="alice",
        members=(("bob", ProjectRole.EDITOR), ("carol", ProjectRole.EDITOR)),
        tasks=(
            # chain: API client → offline sync → beta build
            DemoTask("Generate the API client from /openapi.json", ("backend",), _DONE),
            DemoTask("Offline sync of tasks", ("backend", "mobile"), _DONE, after=0),
            DemoTask("Ship the beta build to testers", ("release", "mobile"), _DOING, after=1),
            DemoTask("Push notifications for assignments", ("mobile",)),
            DemoTask("Dark mode", ("mobile", "design")),
            DemoTask("Crash reporting", ("mobile", "infra"), _DONE),
            DemoTask("Login with the company SSO", ("backend", "security")),
            DemoTask("App store screenshots", ("design", "release")),
            DemoTask("Beta feedback form", ("mobile",)),
            DemoTask("Fix the date picker on Android", ("bug", "mobile"), _REVIEW),
            DemoTask("Privacy policy page", ("legal", "docs")),
            DemoTask("Tablet layout", ("mobile", "design")),
            DemoTask("Performance pass on task lists", ("mobile", "performance")),
            DemoTask("Localise into German", ("mobile", "i18n")),
            DemoTask("Release notes for beta 1", ("docs", "release")),
        ),
    ),
)
_PRIORITIES = (TaskPriority.MEDIUM, TaskPriority.HIGH, TaskPriority.LOW, TaskPriority.URGENT)


@dataclass(frozen=True)
class DemoWork:
    created: bool
    project_ids: tuple[UUID, ...]
    blocked_task_id: UUID | None


async def seed_work(db: Database, tenant_slug: str, *, today: date) -> DemoWork:
    """Create the demo projects and tasks in the tenant unless they are there already."""
    begin_context("cli-demo", None)
    async with db.sessions() as session:
        tenant_id = await TenantDirectory(session).tenant_id_for_slug(tenant_slug)
        if tenant_id is None:
            raise LookupError(f"no tenant {tenant_slug!r}")
        await set_tenant(session, tenant_id)
        users: dict[str, AuthContext] = {}
        for username in ("alice", "bob", "carol"):
            user = await IdentityRepository(session, tenant_id).find_user_by_login(username)
            if user is None:
                raise LookupError(f"the demo user {username!r} is missing")
            users[username] = AuthContext(tenant_id, user.id, Role(user.role))
        existing = await _existing(session, users["alice"])
        await session.rollback()
    if existing is not None:
        return DemoWork(False, *existing)

    ids: list[UUID] = []
    blocked: UUID | None = None
    for number, spec in enumerate(PROJECTS):
        async with db.sessions() as session:
            project_id, blocked_here = await _seed_project(session, spec, users, today, number)
            await session.commit()
        ids.append(project_id)
        blocked = blocked or blocked_here
    return DemoWork(True, tuple(ids), blocked)


async def _existing(
    session: AsyncSession, admin: AuthContext
) -> tuple[tuple[UUID, ...], UUID | None] | None:
    found: dict[str, UUID] = {}
    for spec in PROJECTS:
        rows, _ = await projects.list_projects(
            session, admin, status=None, owner_id=None, q=spec.name, cursor=None, limit=50
        )
        match = next((row.id for row in rows if row.name == spec.name), None)
        if match is not None:
            found[spec.name] = match
    if not found:
        return None
    ids = tuple(found[spec.name] for spec in PROJECTS if spec.name in found)
    blocked, _ = await tasks.list_project_tasks(
        session, admin, ids[0], filters=TaskFilter(blocked=True), sort=TaskSort.CREATED,
        cursor=None, limit=1,
    )
    return ids, blocked[0].id if blocked else None


async def _seed_project(
    session: AsyncSession,
    spec: DemoProject,
    users: dict[str, AuthContext],
    today: date,
    number: int,
) -> tuple[UUID, UUID | None]:
    owner = users[spec.owner]
    await set_tenant(session, owner.tenant_id)
    bind_principal(owner.tenant_id, owner.user_id)
    project = await projects.create_project(
        session,
        owner,
        body=ProjectCreate(
            name=spec.name,
            description=spec.description,
            owner_id=owner.user_id,
            start_date=today,
            end_date=today + timedelta(days=90),
        ),
    )
    for username, role in spec.members:
        await projects.put_member(
            session, owner, project.id, users[username].user_id, body=MemberPut(role=role)
        )
    team = [spec.owner, *(username for username, _ in spec.members)]
    created: list[UUID] = []
    blocked: UUID | None = None
    for index, task in enumerate(spec.tasks):
        depends_on = [created[task.after]] if task.after is not None else []
        record = await tasks.create_task(
            session,
            owner,
            project.id,
            body=TaskCreate(
                title=task.title,
                description=f"Demo task {index + 1} of {spec.name!r}.",
                status=task.status,
                priority=_PRIORITIES[(index + number) % len(_PRIORITIES)],
                assignee_id=users[team[(index + number) % len(team)]].user_id,
                due_date=today + timedelta(days=3 + 4 * index),
                labels=list(task.labels),
                depends_on=depends_on,
            ),
        )
        created.append(record.id)
        if record.blocked:
            blocked = record.id
    return project.id, blocked
