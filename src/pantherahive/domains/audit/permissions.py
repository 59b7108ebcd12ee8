"""Who may read the audit trail: the one table the service consults and the tests enumerate."""

from __future__ import annotations

from enum import StrEnum

from pantherahive.infra.security.principal import AuthContext, Role


class AuditAction(StrEnum):
    LIST = "audit.list"
    READ = "audit.read"
    EXPORT = "audit.export"
    VERIFY = "audit.verify"


AUDIT_PERMISSIONS: dict[AuditAction, frozenset[Role]] = {
    AuditAction.LIST: frozenset({Role.ADMIN}),
    AuditAction.READ: frozenset({Role.ADMIN}),
    AuditAction.EXPORT: frozenset({Role.ADMIN}),
    AuditAction.VERIFY: frozenset({Role.ADMIN}),
}


def audit_may(auth: AuthContext, action: AuditAction) -> bool:
    return auth.role in AUDIT_PERMISSIONS[action]
