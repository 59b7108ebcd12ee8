"""Who may do what with the tenant's single sign-on: the table the service consults."""

from __future__ import annotations

from enum import StrEnum

from pantherahive.infra.security.principal import AuthContext, Role


class SsoAction(StrEnum):
    READ_SETTINGS = "tenant.read_sso"
    UPDATE_SETTINGS = "tenant.update_sso"


SSO_PERMISSIONS: dict[SsoAction, frozenset[Role]] = {
    SsoAction.READ_SETTINGS: frozenset({Role.ADMIN}),
    SsoAction.UPDATE_SETTINGS: frozenset({Role.ADMIN}),
}


def sso_may(auth: AuthContext, action: SsoAction) -> bool:
    return auth.role in SSO_PERMISSIONS[action]
