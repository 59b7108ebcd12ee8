"""``Idempotency-Key`` on a request: claim the key, replay or refuse a repeat, store the
answer — the request side of :mod:`infra.http.idempotency` (which stores the answers).

The key is claimed in the request's own transaction *before* the route runs, and the
answer is written over the claim in that same transaction, so a create and the record of
it commit together. A duplicate that arrives mid-flight blocks on the claim until the first
request's transaction ends, then replays its answer: the route never runs twice at once (a
refresh retried while the first is still running must not look like a stolen token coming
back). A refused request (4xx) rolls back to a savepoint taken after the claim and still
stores its answer. The unit of work (:mod:`infra.http.unit_of_work`) owns the transaction
and calls in here at each of those moments.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction, async_sessionmaker
from starlette.types import Message, Receive, Scope, Send

from pantherahive.infra.db.engine import set_tenant
from pantherahive.infra.http.idempotency import IdempotencyStore, StoredResponse
from pantherahive.infra.http.problems import send_problem
from pantherahive.infra.http.state import UnitOfWorkState

MAX_KEY_LENGTH = 255
# A duplicate waits for the first request at most this long (the statement timeout), then
# is told to come back.
_WAIT_GAVE_UP = frozenset({"57014", "55P03"})  # query_canceled, lock_not_available
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

# Who owns a key: ("user:<id>", tenant) for a token's user, ("ip:<address>", None) without.
ScopeResolver = Callable[[Scope], tuple[str, str | None] | None]


@dataclass
class Claim:
    """A request's claim on its key."""

    scope_key: str
    key: str
    fingerprint: bytes
    tenant_id: str | None
    # the claim's savepoint: rolling back to it undoes the route's writes, not the claim
    savepoint: AsyncSessionTransaction | None = None


class IdempotentRequests:
    def __init__(
        self, store: Callable[[], IdempotencyStore], principal: ScopeResolver
    ) -> None:
        self._store = store
        self._principal = principal

    async def begin(
        self, state: UnitOfWorkState, scope: Scope, receive: Receive, send: Send
    ) -> tuple[bool, Claim | None, Receive]:
        """Before the route: ``(go on?, the claim if the request has one, receive)``.

        Not going on means the request was answered here: a malformed key (422), a replay
        of the first answer, a different body under the same key (422), or a duplicate
        that waited too long (409). ``receive`` replays the body read for the fingerprint.
        """
        raw_key = _header(scope, b"idempotency-key")
        if raw_key is None or scope["method"] != "POST":
            return True, None, receive
        if not raw_key or len(raw_key) > MAX_KEY_LENGTH:
            await send_problem(
                send, 422, "Idempotency-Key must be 1 to 255 characters.", scope["path"]
            )
            return False, None, receive
        resolved = self._principal(scope)
        if resolved is None:
            return True, None, receive
        body, receive = await _read_body(receive)
        scope_key, tenant_id = resolved
        fingerprint = self._store().fingerprint(
            scope["path"], scope.get("query_string", b""), body
        )
        claim = Claim(scope_key, raw_key, fingerprint, tenant_id)
        return await self._claim(state, claim, scope, send), claim, receive

    async def _claim(
        self, state: UnitOfWorkState, claim: Claim, scope: Scope, send: Send
    ) -> bool:
        """Replay a stored answer, or take the key for this request; True to go on."""
        store = self._store()
        existing = await store.lookup(claim.scope_key, claim.key, claim.tenant_id)
        if existing is None:
            assert state.sessions is not None
            session = state.session = state.sessions()
            try:
                if await store.claim(
                    session, claim.scope_key, claim.key, claim.tenant_id, claim.fingerprint
                ):
                    claim.savepoint = await session.begin_nested()
                    return True
            except DBAPIError as exc:
                state.session = None
                await discard(session)
                if getattr(exc.orig, "sqlstate", None) not in _WAIT_GAVE_UP:
                    raise
                await _busy(send, scope)
                return False
            # We waited for the key's holder, which has committed its answer: replay it.
            state.session = None
            await discard(session)
            existing = await store.lookup(claim.scope_key, claim.key, claim.tenant_id)
        if existing is None:
            await _busy(send, scope)
        else:
            await _replay_or_refuse(existing, claim, scope, send)
        return False

    @staticmethod
    def answer(
        claim: Claim, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> StoredResponse | None:
        """The answer to keep for replays; None for one that says nothing about the
        request itself (5xx, 401, 429: a retry may well succeed)."""
        if status >= 500 or status in _TRANSIENT:
            return None
        return StoredResponse(
            fingerprint=claim.fingerprint,
            status=status,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
            body=body,
        )

    async def settle(
        self, session: AsyncSession, claim: Claim, stored: StoredResponse | None, keep: bool
    ) -> bool:
        """Write the answer over the claim in the request's transaction; return whether
        the transaction is to be committed (a refused request keeps its claim and answer,
        not its writes)."""
        store = self._store()
        if not keep and stored is not None and claim.savepoint is not None:
            await claim.savepoint.rollback()
            keep = True
        if stored is not None:
            await store.record(session, claim.scope_key, claim.key, stored)
        elif keep:
            # Kept writes (a failed login's event) but an answer not to replay.
            await store.release(session, claim.scope_key, claim.key)
        return keep

    async def settle_elsewhere(
        self,
        sessions: async_sessionmaker[AsyncSession],
        claim: Claim,
        stored: StoredResponse | None,
    ) -> None:
        """The route ended the request's session itself (a streamed answer), committing
        the claim with it: settle the claim in a transaction of its own."""
        store = self._store()
        async with sessions() as own:
            if claim.tenant_id:
                await set_tenant(own, claim.tenant_id)
            if stored is not None:
                await store.record(own, claim.scope_key, claim.key, stored)
            else:
                await store.release(own, claim.scope_key, claim.key)
            await own.commit()


async def _replay_or_refuse(
    existing: StoredResponse, claim: Claim, scope: Scope, send: Send
) -> None:
    if existing.fingerprint != claim.fingerprint:
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


async def discard(session: AsyncSession) -> None:
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
