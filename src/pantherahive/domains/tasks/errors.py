"""Tasks' domain errors."""

from __future__ import annotations

from uuid import UUID

from pantherahive.core.errors import Conflict, FieldError, NotFound, ValidationFailed


class TaskNotFound(NotFound):
    slug = "task-not-found"

    def __init__(self, detail: str = "No such task.") -> None:
        super().__init__(detail)


class DependencyNotFound(NotFound):
    slug = "dependency-not-found"

    def __init__(self) -> None:
        super().__init__("This task does not depend on that task.")


class DependencyCycle(Conflict):
    slug = "dependency-cycle"

    def __init__(self, cycle: list[UUID]) -> None:
        names = " → ".join(str(task_id) for task_id in cycle)
        super().__init__(
            f"This dependency would close a cycle: {names}.",
            extra={"cycle": [str(task_id) for task_id in cycle]},
        )


class TaskBlocked(Conflict):
    slug = "task-blocked"

    def __init__(
        self,
        blockers: list[UUID],
        detail: str = "The task cannot be DONE while tasks it depends on are open.",
        field: str = "status",
    ) -> None:
        super().__init__(
            detail,
            errors=[FieldError(field, f"blocked by {blocker}") for blocker in blockers],
            extra={"blockers": [str(blocker) for blocker in blockers]},
        )


class InvalidDependency(ValidationFailed):
    slug = "invalid-dependency"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, errors=[FieldError("dependsOnId", detail)])


class IneligibleAssignee(ValidationFailed):
    slug = "ineligible-assignee"

    def __init__(self) -> None:
        super().__init__(
            "The assignee must be an active user who is a member (or the owner) of the project.",
            errors=[FieldError("assigneeId", "not a member of the project")],
        )


class ScheduleTooLarge(Conflict):
    slug = "schedule-too-large"

    def __init__(self, max_tasks: int) -> None:
        super().__init__(
            f"The project has more than {max_tasks} tasks, the most a schedule is computed "
            "for; list its tasks (GET /v1/projects/{projectId}/tasks) instead.",
            extra={"maxTasks": max_tasks},
        )
