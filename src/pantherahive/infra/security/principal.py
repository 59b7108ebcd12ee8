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
    # A personal access token's scopes and id; None for a session (login) token, which
    # may do everything its role allows.
    scopes: frozenset[str] | None = None
    token_id: UUID | None = None
    # The login session the request's access token belongs to (None: not a session's).
    session_id: UUID | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def via_token(self) -> bool:
        """Whether the caller authenticated with a personal access token."""
        return self.token_id is not None
