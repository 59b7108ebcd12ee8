"""One unit of work per request, committed at the edge *before* the response leaves.

The request's session is opened lazily by :func:`request_session`; this middleware owns
its end. It buffers the response while a transaction is open, commits (or rolls back),
and only then sends, so every 2xx is durable. A request with an ``Idempotency-Key`` has
its key claimed and its answer stored in that same transaction
(:mod:`infra.http.idempotent_requests`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pantherahive.infra.bus.guard import has_emitted, unannounced_writes
from pantherahive.infra.http.idempotency import IdempotencyStore
from pantherahive.infra.http.idempotent_requests import (
    Claim,
    IdempotentRequests,
    ScopeResolver,
    discard,
)
from pantherahive.infra.http.problems import send_problem
from pantherahive.infra.http.state import UOW_KEY, UnitOfWorkState
from pantherahive.infra.logging import get_logger

_READ_METHODS = frozenset({"GET", "HEAD"})
log = get_logger(__name__)


async def request_session(request: Request) -> AsyncSession:
    """FastAPI dependency: the request's session (one transaction, committed by the edge)."""
    state = request.scope.get(UOW_KEY)
    if not isinstance(state, UnitOfWorkState) or state.sessions is None:
        raise RuntimeError("UnitOfWorkMiddleware is not installed")
    if state.session is None:
        state.session = state.sessions()
    return state.session


RequestSession = Annotated[AsyncSession, Depends(request_session)]
"""A route's parameter for the request's session: ``session: RequestSession``."""


async def end_request_session(request: Request) -> None:
    """Commit and close the request's session now, before the response starts.

    For streamed responses (NDJSON exports, event streams) that read through a session of
    their own: with no request session left open, the middleware sends the response as it
    is produced instead of buffering it for the commit.
    """
    state = request.scope.get(UOW_KEY)
    if isinstance(state, UnitOfWorkState) and state.session is not None:
        session, state.session = state.session, None
        try:
            await session.commit()
        finally:
            await session.close()


@dataclass
class _Buffer:
    messages: list[Message] = field(default_factory=list)
    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def body(self) -> bytes:
        return b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"
        )


class UnitOfWorkMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        idempotency: Callable[[], IdempotencyStore],
        principal: ScopeResolver,
        announced_schemas: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self._sessions = sessions
        self._idempotent = IdempotentRequests(idempotency, principal)
        self._announced = announced_schemas

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = UnitOfWorkState(sessions=self._sessions())
        scope[UOW_KEY] = state

        go_on, claim, receive = await self._idempotent.begin(state, scope, receive, send)
        if not go_on:
            return

        buffer = _Buffer()
        passthrough = False

        async def capture(message: Message) -> None:
            nonlocal passthrough
            if message["type"] == "http.response.start":
                if state.session is None and claim is None:
                    passthrough = True
                else:
                    buffer.status = message["status"]
                    buffer.headers = list(message.get("headers", []))
            if passthrough:
                await send(message)
            else:
                buffer.messages.append(message)

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            if state.session is not None:
                await discard(state.session)
            raise
        if passthrough:
            return
        if await self._refuse_unannounced_write(state, buffer, scope):
            await send_problem(
                send, 500, "An unexpected error occurred; it has been logged.", scope["path"]
            )
            return

        await self._finish(state, buffer, claim)
        for message in buffer.messages:
            await send(message)

    async def _refuse_unannounced_write(
        self, state: UnitOfWorkState, buffer: _Buffer, scope: Scope
    ) -> bool:
        """Roll back a successful request that changed rows of an announced schema without
        emitting its event (infra.bus.guard). Checked only when nothing was emitted and the
        method may write, so reads and announced writes pay nothing."""
        session = state.session
        if (
            not self._announced
            or session is None
            or buffer.status >= 400
            or scope["method"] in _READ_METHODS
            or has_emitted(session)
        ):
            return False
        written = await unannounced_writes(session, self._announced)
        if not written:
            return False
        route = getattr(scope.get("route"), "path", None) or scope["path"]
        log.error("write without event", method=scope["method"], route=route, schemas=written)
        state.session = None
        try:
            await session.rollback()
        finally:
            await session.close()
        return True

    async def _finish(self, state: UnitOfWorkState, buffer: _Buffer, claim: Claim | None) -> None:
        """Commit or roll back, with the idempotency claim settled in the same transaction."""
        session = state.session
        keep = buffer.status < 400 or (state.commit_on_error and buffer.status < 500)
        stored = (
            None if claim is None
            else self._idempotent.answer(claim, buffer.status, buffer.headers, buffer.body())
        )
        if session is None:
            if claim is not None:
                await self._idempotent.settle_elsewhere(self._sessions(), claim, stored)
            return
        try:
            if claim is not None:
                keep = await self._idempotent.settle(session, claim, stored, keep)
            if keep:
                await session.commit()
            else:
                await session.rollback()
        except BaseException:
            await discard(session)
            raise
        await session.close()
