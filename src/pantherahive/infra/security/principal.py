"""The authenticated principal. Only identity's auth dependency constructs one."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID


class Role(StrEnum):
    ADMIN = "ADMIN"
    MANAGER = "MANAGER"
    MEMBER = "MEMBER"


@dataclass(frozen=True, slots=True)
class AuthContext:
    tenant_id: UUID
    user_id: UUID
    role: Role
    # The login session the request's access token belongs to (None: not a session's).
    session_id: UUID | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN
