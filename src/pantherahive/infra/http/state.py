"""Per-request unit-of-work state, shared by the middleware, the session dependency and
the error handlers (which decide whether a failed request keeps its writes)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import Scope

UOW_KEY = "pantherahive.uow"


@dataclass
class UnitOfWorkState:
    sessions: async_sessionmaker[AsyncSession] | None = None
    session: AsyncSession | None = None
    commit_on_error: bool = False


def mark_commit_on_error(scope: Scope) -> None:
    state = scope.get(UOW_KEY)
    if isinstance(state, UnitOfWorkState):
        state.commit_on_error = True
