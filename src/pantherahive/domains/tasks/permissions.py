"""Who may do what with tasks: the one table the service consults and the tests enumerate.

A decision depends on the caller's rights on the task's project (``ProjectAccess`` from
projects' api: ``can_read`` for owner, members and ADMIN; ``can_write_tasks`` for the
owner, EDITORs and ADMIN) and on whether the caller is the task's assignee. A caller who
cannot read the project never gets this far: the project, and its tasks, are 404.
"""

from __future__ import annotations

from enum import StrEnum

from pantherahive.domains.projects.api import ProjectAccess


class TaskAction(StrEnum):
    READ = "task.read"  # get one, list, search, schedule
    CREATE = "task.create"
    UPDATE = "task.update"  # any field
    UPDATE_STATUS = "task.update_status"  # the status field alone
    DELETE = "task.delete"
    MANAGE_DEPENDENCIES = "task.dependencies.manage"


class ProjectRight(StrEnum):
    READ = "read"
    WRITE_TASKS = "write_tasks"


# action -> (the right on the project that allows it, whether the assignee may regardless)
TASK_PERMISSIONS: dict[TaskAction, tuple[ProjectRight, bool]] = {
    TaskAction.READ: (ProjectRight.READ, False),
    TaskAction.CREATE: (ProjectRight.WRITE_TASKS, False),
    TaskAction.UPDATE: (ProjectRight.WRITE_TASKS, False),
    TaskAction.UPDATE_STATUS: (ProjectRight.WRITE_TASKS, True),
    TaskAction.DELETE: (ProjectRight.WRITE_TASKS, False),
    TaskAction.MANAGE_DEPENDENCIES: (ProjectRight.WRITE_TASKS, False),
}


def task_may(access: ProjectAccess, action: TaskAction, *, is_assignee: bool = False) -> bool:
    right, assignee_allowed = TASK_PERMISSIONS[action]
    has_right = access.can_read if right is ProjectRight.READ else access.can_write_tasks
    return has_right or (assignee_allowed and is_assignee)
