"""One unit of work per request, committed at the edge *before* the response leaves.

The request's session is opened lazily by :func:`request_session`; this middleware owns
its end. It buffers the response while a transaction is open, commits (or rolls back),
and only then sends, so every 2xx is durable. An ``Idempotency-Key`` result is stored in
that same transaction, so a create and the record of it commit together; a concurrent
duplicate blocks on the key's unique index, then rolls its own work back and replays the
winner's response.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pantherahive.infra.bus.guard import has_emitted, unannounced_writes
from pantherahive.infra.http.idempotency import IdempotencyStore, StoredResponse
from pantherahive.infra.http.problems import send_problem
from pantherahive.infra.http.state import UOW_KEY, UnitOfWorkState
from pantherahive.infra.logging import get_logger

MAX_KEY_LENGTH = 255
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
        idempotency_excluded_prefixes: tuple[str, ...] = ("/v1/auth/",),
        announced_schemas: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self._sessions = sessions
        self._idempotency = idempotency
        self._principal = principal
        self._excluded = idempotency_excluded_prefixes
        self._announced = announced_schemas

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = UnitOfWorkState(sessions=self._sessions())
        scope[UOW_KEY] = state

        idem: _Idempotent | None = None
        raw_key = _header(scope, b"idempotency-key")
        if (
            raw_key is not None
            and scope["method"] == "POST"
            and not scope["path"].startswith(self._excluded)
        ):
            if not raw_key or len(raw_key) > MAX_KEY_LENGTH:
                await send_problem(
                    send, 422, "Idempotency-Key must be 1 to 255 characters.", scope["path"]
                )
                return
            resolved = self._principal(scope)
        else:
            resolved = None
        if resolved is not None and raw_key is not None:
            body, receive = await _read_body(receive)
            scope_key, tenant_id = resolved
            fingerprint = hashlib.sha256(
                b"\0".join([scope["path"].encode(), scope.get("query_string", b""), body])
            ).digest()
            idem = _Idempotent(scope_key, raw_key, fingerprint, tenant_id)
            existing = await self._idempotency().lookup(idem.scope_key, idem.key, idem.tenant_id)
            if existing is not None:
                await self._replay_or_refuse(existing, idem, scope, send)
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
                await state.session.rollback()
                await state.session.close()
            raise
        if passthrough:
            return
        if await self._refuse_unannounced_write(state, buffer, scope):
            await send_problem(
                send, 500, "An unexpected error occurred; it has been logged.", scope["path"]
            )
            return

        replay = await self._finish(state, buffer, idem)
        if replay is not None:
            await self._replay_or_refuse(replay, idem, scope, send)  # type: ignore[arg-type]
            return
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

    async def _finish(
        self, state: UnitOfWorkState, buffer: _Buffer, idem: _Idempotent | None
    ) -> StoredResponse | None:
        """Commit or roll back; return the winner's response if we lost an idempotency race."""
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
        try:
            if session is not None and keep:
                if stored is not None and idem is not None:
                    won = await store.save(
                        session,
                        idem.scope_key,
                        idem.key,
                        idem.tenant_id,
                        stored,
                        scope_tenant=False,
                    )
                    if not won:
                        await session.rollback()
                        return await store.lookup(idem.scope_key, idem.key, idem.tenant_id)
                    stored = None
                await session.commit()
            elif session is not None:
                await session.rollback()
        except DBAPIError:
            await session.rollback() if session is not None else None
            raise
        finally:
            if session is not None:
                await session.close()
        if stored is not None and idem is not None:
            # A refused request still claims its key, in a transaction of its own.
            async with self._sessions()() as own:
                won = await store.save(own, idem.scope_key, idem.key, idem.tenant_id, stored)
                await own.commit()
            if not won:
                return await store.lookup(idem.scope_key, idem.key, idem.tenant_id)
        return None

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
