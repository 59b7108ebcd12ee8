"""Projects' domain errors."""

from __future__ import annotations

from pantherahive.core.errors import Conflict, NotFound


class ProjectNotFound(NotFound):
    slug = "project-not-found"

    def __init__(self) -> None:
        super().__init__("No such project.")


class MemberNotFound(NotFound):
    slug = "member-not-found"

    def __init__(self) -> None:
        super().__init__("That user is not a member of this project.")


class UserNotFound(NotFound):
    slug = "user-not-found"

    def __init__(self) -> None:
        super().__init__("No active user with that id in this tenant.")


class OwnerMembership(Conflict):
    slug = "owner-membership"

    def __init__(self) -> None:
        super().__init__(
            "The owner's membership follows the project's ownerId: change the owner with "
            "PATCH /v1/projects/{projectId} instead."
        )
