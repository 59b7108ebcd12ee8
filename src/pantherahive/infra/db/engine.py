"""Engines and sessions.

An engine connects as the login its URL names and never switches role: the app's
processes use ``DATABASE_URL`` (the ``pantherahive_app`` login, which owns nothing, so
row-level security always applies), the migrations and administrative commands
``DATABASE_ADMIN_URL`` (the owner). See ``infra/db/roles.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

APP_ROLE = "pantherahive_app"
"""The app's login role (migration 0001 creates it; its grants are the app's rights)."""
TENANT_SETTING = "app.tenant_id"


def to_asyncpg_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, not {parts.scheme}://")
    return urlunsplit(("postgresql+asyncpg", *parts[1:]))


def create_app_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    statement_timeout_ms: int = 15_000,
) -> AsyncEngine:
    server_settings: dict[str, str] = {
        "application_name": "pantherahive",
        "jit": "off",
        "statement_timeout": str(statement_timeout_ms),
        "idle_in_transaction_session_timeout": "60000",
    }
    connect_args: dict[str, Any] = {"server_settings": server_settings}
    return create_async_engine(
        to_asyncpg_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args=connect_args,
    )


@dataclass
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @classmethod
    def connect(cls, url: str, **kwargs: Any) -> Database:
        engine = create_app_engine(url, **kwargs)
        return cls(engine, async_sessionmaker(engine, expire_on_commit=False, autoflush=False))

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


async def set_tenant(session: AsyncSession, tenant_id: object) -> None:
    """Scope the current transaction to one tenant; RLS policies key on this setting."""
    await session.execute(
        text("SELECT set_config(:name, :value, true)"),
        {"name": TENANT_SETTING, "value": str(tenant_id)},
    )
