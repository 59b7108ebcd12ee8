"""Scopes of personal access tokens, and which scope each operation requires.

A router (or a single route) declares its scopes once, as a dependency::

    router = APIRouter(prefix="/v1/projects", dependencies=[scoped(Scope.PROJECTS_READ,
                                                                   Scope.PROJECTS_WRITE)])

``GET``/``HEAD`` need the read scope, every other method the write scope. The declaration
closest to the route wins (a route's own ``dependencies`` come after its router's), so a
route may narrow or widen its router's rule. :func:`require_auth` enforces it, and
:func:`document_scopes` writes it into the OpenAPI document (``security`` with the scope
on the bearer scheme, and ``x-required-scope``), so the document and the check cannot
disagree.

A route that declares nothing refuses personal access tokens altogether (fail closed):
a new route is out of reach of every token until someone decides which scope it needs.
Session tokens (the JWT of a login) carry no scopes and are limited by the role alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fastapi import Depends
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from pantherahive.infra.security.principal import Role

BEARER_SCHEME = "HTTPBearer"
READ_METHODS = frozenset({"GET", "HEAD"})


class Scope(StrEnum):
    TASKS_READ = "tasks:read"
    TASKS_WRITE = "tasks:write"
    PROJECTS_READ = "projects:read"
    PROJECTS_WRITE = "projects:write"
    NOTIFICATIONS_READ = "notifications:read"
    NOTIFICATIONS_WRITE = "notifications:write"
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    AUDIT_READ = "audit:read"
    ADMIN = "admin"
    """Everything the user's role allows, including the ADMIN-only operations."""


# Scopes whose every operation needs the ADMIN role: only an ADMIN may grant them, so a
# token never names more than its user could do.
ADMIN_ROLE_SCOPES = frozenset({Scope.ADMIN, Scope.AUDIT_READ})


def grantable(role: Role) -> frozenset[Scope]:
    """The scopes a user of ``role`` may put on a token."""
    return frozenset(Scope) if role is Role.ADMIN else frozenset(Scope) - ADMIN_ROLE_SCOPES


def satisfies(held: frozenset[str], required: Scope) -> bool:
    return required in held or Scope.ADMIN in held


@dataclass(frozen=True, slots=True)
class ScopeRule:
    """The scope a route needs, per kind of method; ``None`` for both: no token may call it
    (session tokens only). Called as a dependency it does nothing: ``require_auth`` reads
    it from the matched route."""

    read: Scope | None
    write: Scope | None

    async def __call__(self) -> None:
        return None

    def for_method(self, method: str) -> Scope | None:
        return self.read if method.upper() in READ_METHODS else self.write


def scoped(read: Scope, write: Scope | None = None) -> Any:
    """The dependency declaring a router's or route's scopes (``write`` defaults to
    ``read``: a router whose every operation needs one scope)."""
    return Depends(ScopeRule(read, write or read))


def session_only() -> Any:
    """The dependency of a route no personal access token may call (token management,
    password change): a leaked token must not mint more tokens or take the account."""
    return Depends(ScopeRule(None, None))


def rule_of(route: object) -> ScopeRule | None:
    """The scope rule closest to ``route`` (a route's own dependencies come last)."""
    dependencies = getattr(route, "dependencies", None) or ()
    for dependency in reversed(dependencies):
        if isinstance(dependency.dependency, ScopeRule):
            rule: ScopeRule = dependency.dependency
            return rule
    return None


def required_scope(route: object, method: str) -> Scope | None:
    """The scope a token needs for ``method`` on ``route``; None: no token may call it."""
    rule = rule_of(route)
    return rule.for_method(method) if rule else None


def document_scopes(schema: dict[str, Any], routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """Write each authenticated operation's scope into the OpenAPI document: the bearer
    requirement lists it (OpenAPI's own place for a scheme's scopes) and
    ``x-required-scope`` names it; an operation no token may call says
    ``x-required-scope: null``. Each declares the 403 of a refused token."""
    paths = schema.get("paths", {})
    # Routers included in the app are walked as FastAPI's own document generator walks
    # them; the rule is read from the route as declared, as ``require_auth`` reads it.
    for context in iter_route_contexts(list(routes)):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        operations = paths.get(context.path_format or route.path_format, {})
        for method in context.methods or ():
            operation = operations.get(method.lower())
            if operation is None or not _authenticated(operation):
                continue
            scope = required_scope(route, method)
            operation["security"] = [{BEARER_SCHEME: [scope.value] if scope else []}]
            operation["x-required-scope"] = scope.value if scope else None
            # A token without the scope, or any token where none may call, is refused.
            operation.setdefault("responses", {}).setdefault("403", {"description": "Forbidden"})
    return schema


def _authenticated(operation: dict[str, Any]) -> bool:
    return any(BEARER_SCHEME in requirement for requirement in operation.get("security", ()))
