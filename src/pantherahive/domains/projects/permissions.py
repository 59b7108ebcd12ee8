"""Who may do what with projects: the one table the service consults and the tests
enumerate.

A decision depends on the caller's tenant role and their membership of the project. An
action the caller may not even ``READ`` is answered 404 (the project stays invisible);
a visible project with a forbidden action is 403 and an ``authz.denied`` event.
"""

from __future__ import annotations

from enum import StrEnum

from pantherahive.infra.security.principal import Role


class ProjectRole(StrEnum):
    OWNER = "OWNER"
    EDITOR = "EDITOR"
    VIEWER = "VIEWER"


class ProjectAction(StrEnum):
    CREATE = "project.create"
    READ = "project.read"  # get it, see it in lists
    UPDATE = "project.update"
    DELETE = "project.delete"
    LIST_MEMBERS = "project.members.list"
    MANAGE_MEMBERS = "project.members.manage"  # add, change role, remove
    WRITE_TASKS = "project.tasks.write"  # create, change and delete the project's tasks


_NOBODY: frozenset[ProjectRole] = frozenset()
_EVERY_MEMBER = frozenset(ProjectRole)
_ADMIN = frozenset({Role.ADMIN})

# action -> (tenant roles allowed on every project of the tenant, project roles allowed)
PROJECT_PERMISSIONS: dict[ProjectAction, tuple[frozenset[Role], frozenset[ProjectRole]]] = {
    # Creating is about the tenant role only: there is no project yet to be a member of.
    ProjectAction.CREATE: (frozenset({Role.ADMIN, Role.MANAGER}), _NOBODY),
    ProjectAction.READ: (_ADMIN, _EVERY_MEMBER),
    ProjectAction.UPDATE: (_ADMIN, frozenset({ProjectRole.OWNER})),
    ProjectAction.DELETE: (_ADMIN, frozenset({ProjectRole.OWNER})),
    ProjectAction.LIST_MEMBERS: (_ADMIN, _EVERY_MEMBER),
    ProjectAction.MANAGE_MEMBERS: (_ADMIN, frozenset({ProjectRole.OWNER})),
    ProjectAction.WRITE_TASKS: (_ADMIN, frozenset({ProjectRole.OWNER, ProjectRole.EDITOR})),
}


def project_may(role: Role, membership: ProjectRole | None, action: ProjectAction) -> bool:
    """``membership`` is the caller's role on the project, None when not a member."""
    roles, memberships = PROJECT_PERMISSIONS[action]
    return role in roles or (membership is not None and membership in memberships)
