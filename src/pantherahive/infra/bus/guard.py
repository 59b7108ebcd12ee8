"""No write without its event: the check that makes ``emit`` the only way to change state.

``emit`` marks its session; a row trigger (migration 0010) marks the transaction for each
service schema it writes to. The edges — the request's unit of work before it commits, the
consumer runner after each handler — refuse a transaction that changed rows of an
announced schema but emitted nothing. The check costs one statement, and only when nothing
was emitted, so a write that announces itself (and every GET) pays nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_EMITTED = "pantherahive.emitted"
_TAKE = text("SELECT bus.take_write_marks(CAST(:schemas AS text[]))")


class UnannouncedWrite(RuntimeError):
    """A transaction changed a service's rows without emitting the event that says so."""


def mark_emitted(session: AsyncSession) -> None:
    session.info[_EMITTED] = True


def has_emitted(session: AsyncSession) -> bool:
    return bool(session.info.get(_EMITTED))


def forget_emitted(session: AsyncSession) -> None:
    session.info.pop(_EMITTED, None)


async def take_write_marks(session: AsyncSession, schemas: Iterable[str]) -> list[str]:
    """The schemas among ``schemas`` this transaction changed rows of since the last call
    (the marks are cleared, so a runner can check handler by handler)."""
    written = await session.scalar(_TAKE, {"schemas": sorted(schemas)})
    return list(written or [])


async def unannounced_writes(session: AsyncSession, schemas: Iterable[str]) -> list[str]:
    """The schemas written to without any event emitted; empty when the session emitted."""
    if has_emitted(session):
        return []
    return await take_write_marks(session, schemas)
