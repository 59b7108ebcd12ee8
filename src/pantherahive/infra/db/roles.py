"""The two database logins (docs/configuration.md, "Database roles").

- The **owner** (``DATABASE_ADMIN_URL``) owns every schema, table and function: it runs the
  migrations and the administrative commands. It must bypass row-level security
  (superuser or ``BYPASSRLS``): the ``SECURITY DEFINER`` functions run as it and read
  across tenants, and every tenant table has ``FORCE ROW LEVEL SECURITY``.
- The **app login** (``DATABASE_URL``) is ``pantherahive_app`` itself: a ``LOGIN`` role that
  owns nothing, is a member of nothing, and holds only the grants the migrations give it.
  The API, worker, relay and delivery processes connect as it directly, so no ``RESET
  ROLE`` or ``SET ROLE`` can give a connection more than those grants.

The migrations create ``pantherahive_app`` without a password (``NOLOGIN``); whoever
administers the server gives it one (``ALTER ROLE pantherahive_app LOGIN PASSWORD …``).
The embedded PostgreSQL does that itself, with a password generated into the data dir.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from sqlalchemy import text

from pantherahive.infra.db.engine import APP_ROLE, Database

_GENERATED_PASSWORD = re.compile(r"^[A-Za-z0-9_-]{24,}$")
_APP_SCHEMAS = ("platform", "bus", "identity", "projects", "tasks", "audit", "notifications")


@dataclass(frozen=True)
class DatabaseUrls:
    app: str
    """The app login's URL (``DATABASE_URL``): every long-running process."""
    admin: str
    """The owner's URL (``DATABASE_ADMIN_URL``): migrations and administrative commands."""


def app_login_sql(password: str) -> str:
    """Create ``pantherahive_app`` as a least-privilege login with this password, or give
    the existing role (``NOLOGIN`` from migration 0001) the login and the password.

    Only for generated passwords (the embedded server, the test suite, the benchmark):
    they are inlined, so anything but URL-safe characters is refused.
    """
    if not _GENERATED_PASSWORD.fullmatch(password):
        raise ValueError("a generated password of at least 24 URL-safe characters is expected")
    # An existing role keeps its attributes (changing SUPERUSER or REPLICATION needs a
    # superuser); the processes check them at start-up (``login_problems``).
    return f"""
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
            CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE
              NOREPLICATION PASSWORD '{password}';
          ELSE
            ALTER ROLE {APP_ROLE} LOGIN PASSWORD '{password}';
          END IF;
        END $$;
    """  # noqa: S608 - the password is checked above: URL-safe characters only


def with_login(url: str, user: str, password: str) -> str:
    """``url`` with its user and password replaced (host, port, database, query kept)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def app_login_url(owner_url: str, password: str) -> str:
    """The app login's URL on the owner's server and database."""
    return with_login(owner_url, APP_ROLE, password)


_LOGIN_FACTS = text(
    """
    SELECT r.rolname AS name, r.rolsuper AS superuser, r.rolbypassrls AS bypassrls,
           r.rolcreaterole AS createrole, r.rolcreatedb AS createdb,
           EXISTS (
             SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY(:schemas) AND pg_has_role(r.oid, c.relowner, 'MEMBER')
           ) AS owns_tables
    FROM pg_roles r WHERE r.rolname = current_user
    """
)


async def login_problems(db: Database) -> list[str]:
    """What makes the login ``db`` connects as more than the least-privilege app role
    (empty when it is fine): a superuser, ``BYPASSRLS``, role or database creation, or
    owning (or being able to become the owner of) the platform's tables."""
    async with db.engine.connect() as conn:
        facts: Any = (await conn.execute(_LOGIN_FACTS, {"schemas": list(_APP_SCHEMAS)})).one()
    name = facts.name
    problems = [
        f"{name} is {what}"
        for what, present in (
            ("a superuser", facts.superuser),
            ("BYPASSRLS", facts.bypassrls),
            ("allowed to create roles", facts.createrole),
            ("allowed to create databases", facts.createdb),
            ("the owner of the platform's tables (or can become it)", facts.owns_tables),
        )
        if present
    ]
    return problems
