"""Who may do what with users: the one table the service consults and the tests enumerate."""

from __future__ import annotations

from enum import StrEnum

from pantherahive.infra.security.principal import AuthContext, Role


class UserAction(StrEnum):
    READ = "user.read"
    LIST = "user.list"
    CREATE = "user.create"
    UPDATE_PROFILE = "user.update_profile"  # names and email
    UPDATE_ROLE_OR_STATUS = "user.update_role_status"
    DEACTIVATE = "user.deactivate"
    REVOKE_SESSIONS = "user.revoke_sessions"  # every session of a user


ALL_ROLES = frozenset(Role)

# action -> (roles allowed on any user of the tenant, whether the user may act on themself)
USER_PERMISSIONS: dict[UserAction, tuple[frozenset[Role], bool]] = {
    UserAction.READ: (ALL_ROLES, True),
    UserAction.LIST: (ALL_ROLES, True),
    UserAction.CREATE: (frozenset({Role.ADMIN}), False),
    UserAction.UPDATE_PROFILE: (frozenset({Role.ADMIN}), True),
    UserAction.UPDATE_ROLE_OR_STATUS: (frozenset({Role.ADMIN}), False),
    UserAction.DEACTIVATE: (frozenset({Role.ADMIN}), False),
    UserAction.REVOKE_SESSIONS: (frozenset({Role.ADMIN}), False),
}


def user_may(auth: AuthContext, action: UserAction, *, target_is_self: bool = False) -> bool:
    roles, self_allowed = USER_PERMISSIONS[action]
    return auth.role in roles or (self_allowed and target_is_self)
