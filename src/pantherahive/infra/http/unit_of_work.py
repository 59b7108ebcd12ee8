"""One unit of work per request, committed at the edge *before* the response leaves.

The request's session is opened lazily by :func:`request_session`; this middleware owns
its end. It buffers the response while a transaction is open, commits (or rolls back),
and only then sends, so every 2xx is durable.

``Idempotency-Key`` (any POST): the key is claimed in the request's own transaction
*before* the route runs, and the answer is written over the claim in that same
transaction, so a create and the record of it commit together. A duplicate that arrives
mid-flight blocks on the claim until the first request's transaction ends, then replays
its answer: the route never runs twice at once (a refresh retried while the first is
still running must not look like a stolen token coming back). A refused request (4xx)
rolls back to a savepoint taken after the claim and still stores its answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction, async_sessionmaker
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pantherahive.infra.bus.guard import has_emitted, unannounced_writes
from pantherahive.infra.db.engine import set_tenant
from pantherahive.infra.http.idempotency import IdempotencyStore, StoredResponse
from pantherahive.infra.http.problems import send_problem
from pantherahive.infra.http.state import UOW_KEY, UnitOfWorkState
from pantherahive.infra.logging import get_logger

MAX_KEY_LENGTH = 255
# A duplicate waits for the first request at most this long (the statement timeout), then
# is told to come back.
_WAIT_GAVE_UP = frozenset({"57014", "55P03"})  # query_canceled, lock_not_available
_READ_METHODS = frozenset({"GET", "HEAD"})
# Answers that say nothing about the request itself: a retry may well succeed.
_TRANSIENT = frozenset({401, 429})
# Headers that describe the moment of the first answer, not the answer itself.
_NOT_REPLAYED = frozenset(
    {
        "content-length",
        "x-request-id",
        "date",
        "server",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
    }
)
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
class _Idempotent:
    scope_key: str
    key: str
    fingerprint: bytes
    tenant_id: str | None
    # the claim's savepoint: rolling back to it undoes the route's writes, not the claim
    savepoint: AsyncSessionTransaction | None = None


@dataclass
class _Buffer:
    messages: list[Message] = field(default_factory=list)
    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def body(self) -> bytes:
        return b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"
        )


ScopeResolver = Callable[[Scope], tuple[str, str | None] | None]


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
        self._idempotency = idempotency
        self._principal = principal
        self._announced = announced_schemas

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = UnitOfWorkState(sessions=self._sessions())
        scope[UOW_KEY] = state

        idem: _Idempotent | None = None
        raw_key = _header(scope, b"idempotency-key")
        if raw_key is not None and scope["method"] == "POST":
            if not raw_key or len(raw_key) > MAX_KEY_LENGTH:
                await send_problem(
                    send, 422, "Idempotency-Key must be 1 to 255 characters.", scope["path"]
                )
                return
            resolved = self._principal(scope)
            if resolved is not None:
                body, receive = await _read_body(receive)
                scope_key, tenant_id = resolved
                fingerprint = self._idempotency().fingerprint(
                    scope["path"], scope.get("query_string", b""), body
                )
                idem = _Idempotent(scope_key, raw_key, fingerprint, tenant_id)
                if not await self._claim(state, idem, scope, send):
                    return

        buffer = _Buffer()
        passthrough = False

        async def capture(message: Message) -> None:
            nonlocal passthrough
            if message["type"] == "http.response.start":
                if state.session is None and idem is None:
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
                await _discard(state.session)
            raise
        if passthrough:
            return
        if await self._refuse_unannounced_write(state, buffer, scope):
            await send_problem(
                send, 500, "An unexpected error occurred; it has been logged.", scope["path"]
            )
            return

        await self._finish(state, buffer, idem)
        for message in buffer.messages:
            await send(message)

    async def _claim(
        self, state: UnitOfWorkState, idem: _Idempotent, scope: Scope, send: Send
    ) -> bool:
        """Replay a stored answer, or take the key for this request; True to go on."""
        store = self._idempotency()
        existing = await store.lookup(idem.scope_key, idem.key, idem.tenant_id)
        if existing is None:
            assert state.sessions is not None
            session = state.session = state.sessions()
            try:
                if await store.claim(
                    session, idem.scope_key, idem.key, idem.tenant_id, idem.fingerprint
                ):
                    idem.savepoint = await session.begin_nested()
                    return True
            except DBAPIError as exc:
                state.session = None
                await _discard(session)
                if getattr(exc.orig, "sqlstate", None) not in _WAIT_GAVE_UP:
                    raise
                await _busy(send, scope)
                return False
            # We waited for the key's holder, which has committed its answer: replay it.
            state.session = None
            await _discard(session)
            existing = await store.lookup(idem.scope_key, idem.key, idem.tenant_id)
        if existing is None:
            await _busy(send, scope)
        else:
            await self._replay_or_refuse(existing, idem, scope, send)
        return False

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

    async def _finish(
        self, state: UnitOfWorkState, buffer: _Buffer, idem: _Idempotent | None
    ) -> None:
        """Commit or roll back, with the idempotency claim settled in the same transaction."""
        store = self._idempotency()
        session = state.session
        keep = buffer.status < 400 or (state.commit_on_error and buffer.status < 500)
        stored = None
        if idem is not None and buffer.status < 500 and buffer.status not in _TRANSIENT:
            stored = StoredResponse(
                fingerprint=idem.fingerprint,
                status=buffer.status,
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in buffer.headers],
                body=buffer.body(),
            )
        if session is None:
            if idem is not None:
                await self._settle_elsewhere(idem, stored)
            return
        try:
            if idem is not None:
                if not keep and stored is not None and idem.savepoint is not None:
                    # A refused request: its writes go, its claim and its answer stay.
                    await idem.savepoint.rollback()
                    keep = True
                if stored is not None:
                    await store.record(session, idem.scope_key, idem.key, stored)
                elif keep:
                    # Kept writes (a failed login's event) but an answer not to replay.
                    await store.release(session, idem.scope_key, idem.key)
            if keep:
                await session.commit()
            else:
                await session.rollback()
        except BaseException:
            await _discard(session)
            raise
        await session.close()

    async def _settle_elsewhere(self, idem: _Idempotent, stored: StoredResponse | None) -> None:
        """The route ended the request's session itself (a streamed answer), committing the
        claim with it: settle the claim in a transaction of its own."""
        store = self._idempotency()
        async with self._sessions()() as own:
            if idem.tenant_id:
                await set_tenant(own, idem.tenant_id)
            if stored is not None:
                await store.record(own, idem.scope_key, idem.key, stored)
            else:
                await store.release(own, idem.scope_key, idem.key)
            await own.commit()

    async def _replay_or_refuse(
        self, existing: StoredResponse, idem: _Idempotent, scope: Scope, send: Send
    ) -> None:
        if existing.fingerprint != idem.fingerprint:
            await send_problem(
                send,
                422,
                "This Idempotency-Key was used with a different request body.",
                scope["path"],
            )
            return
        headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in existing.headers
            if k.lower() not in _NOT_REPLAYED
        ]
        headers.append((b"content-length", str(len(existing.body)).encode()))
        headers.append((b"idempotent-replayed", b"true"))
        await send({"type": "http.response.start", "status": existing.status, "headers": headers})
        await send({"type": "http.response.body", "body": existing.body})


async def _busy(send: Send, scope: Scope) -> None:
    await send_problem(
        send,
        409,
        "A request with this Idempotency-Key is still being processed; retry shortly.",
        scope["path"],
        headers={"Retry-After": "1"},
    )


async def _discard(session: AsyncSession) -> None:
    """Roll back and close, on a path that is already failing: a dead connection must not
    replace the error being reported with one from the clean-up."""
    with contextlib.suppress(Exception):
        await session.rollback()
    with contextlib.suppress(Exception):
        await session.close()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            decoded: str = value.decode("latin-1").strip()
            return decoded
    return None


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay
