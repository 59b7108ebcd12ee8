"""The real-time routes: stream tickets, Server-Sent Events and WebSocket.

The streams never touch the request's unit of work: they open short sessions of their own,
so the gateway passes their responses through unbuffered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Header, Request, WebSocket, status
from fastapi.responses import StreamingResponse
from starlette.websockets import WebSocketDisconnect

from pantherahive.core.errors import Unauthenticated
from pantherahive.domains.identity.api import AuthContext
from pantherahive.domains.notifications.inbox.service import NotificationService, read_model
from pantherahive.domains.notifications.realtime.hub import (
    BEHIND,
    REVOKED,
    Hub,
    StreamPrincipal,
)
from pantherahive.domains.notifications.realtime.schemas import StreamTicketRead
from pantherahive.domains.notifications.realtime.service import TicketService
from pantherahive.infra.db.engine import Database
from pantherahive.infra.http.problems import problem_responses as _problems
from pantherahive.infra.http.unit_of_work import RequestSession
from pantherahive.infra.logging import get_logger
from pantherahive.infra.security.dependency import CurrentAuth

WS_UNAUTHENTICATED = 4401
WS_SERVER_ERROR = 1011
# The contract says "within 5 s" of connecting: 4 s leaves room for the close frame to
# reach the client from a busy process (0.5 s was seen not to be enough on 2 loaded cores).
WS_AUTH_TIMEOUT = 4.0
REPLAY_PAGE = 500
log = get_logger("pantherahive.notifications.router")


class Streams(Protocol):
    """What the stream routes use of the notifications runtime the app built."""

    db: Database
    hub: Hub
    service: NotificationService
    tickets: TicketService
    heartbeat_seconds: float


def _streams(request: Request) -> Streams:
    streams: Streams = request.app.state.platform.notifications
    return streams


def _tickets(request: Request) -> TicketService:
    return _streams(request).tickets


Tickets = Annotated[TicketService, Depends(_tickets)]
router = APIRouter(prefix="/v1/notifications", tags=["notifications"])


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def access_claims(platform: Any, token: str | None) -> Any:
    """The access token's claims (its version and expiry); it was verified already."""
    if token is None:
        raise Unauthenticated("Send an access token: Authorization: Bearer <token>.")
    return platform.authenticator.identity.tokens.verify(token)


@router.post("/stream-ticket", status_code=status.HTTP_201_CREATED, responses=_problems(401))
async def stream_ticket(request: Request, auth: CurrentAuth, session: RequestSession,
                        tickets: Tickets) -> StreamTicketRead:
    """A single-use, 60-second ticket for `GET /v1/notifications/stream?ticket=` (browsers'
    EventSource cannot send an Authorization header, and tokens never go in URLs). The
    stream it opens lasts no longer than the access token that asked for it."""
    claims = access_claims(request.app.state.platform,
                           bearer(request.headers.get("authorization")))
    return await tickets.issue_ticket(
        session, auth, token_version=claims.token_version,
        token_expires_at=datetime.fromtimestamp(claims.expires_at, UTC))


async def _authenticate(runtime: Streams, platform: Any,
                        token: str | None, ticket: str | None) -> StreamPrincipal:
    async with runtime.db.sessions() as session:
        if ticket:
            principal = await runtime.tickets.redeem_ticket(session, ticket)
        elif token:
            auth: AuthContext = await platform.authenticator.principal(session, token)
            claims = access_claims(platform, token)
            principal = StreamPrincipal(auth.tenant_id, auth.user_id, claims.token_version,
                                        datetime.fromtimestamp(claims.expires_at, UTC))
        else:
            raise Unauthenticated("Send an access token or a stream ticket.")
        await session.commit()
    return principal


def _frame(seq: int | str, notification: dict[str, Any]) -> bytes:
    return b"event: notification\nid: %s\ndata: %s\n\n" % (
        str(seq).encode(), orjson.dumps(notification))


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "Server-Sent Events"}, **_problems(401)},
)
async def stream(
    request: Request,
    ticket: str | None = None,
    authorization: Annotated[str | None, Header()] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-Sent Events: `event: notification`, `id: <opaque>`, `data: <Notification>`,
    comment heartbeats. Reconnect with `Last-Event-ID` to receive everything missed.
    Auth: `Authorization: Bearer` or a single-use `?ticket=` from `POST stream-ticket`.
    The stream ends when the caller's access token stops working (expiry, deactivation,
    a role or password change)."""
    runtime = _streams(request)
    principal = await _authenticate(runtime, request.app.state.platform,
                                    bearer(authorization), ticket)
    resume = int(last_event_id) if last_event_id and last_event_id.isdigit() else None
    return StreamingResponse(
        _events(runtime, principal, resume),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(runtime: Streams, principal: StreamPrincipal,
                  resume: int | None) -> AsyncIterator[bytes]:
    tenant_id, user_id = principal.tenant_id, principal.user_id
    # Subscribed before the catch-up reads, so nothing committed meanwhile is missed; what
    # arrives live and was replayed too is dropped by seq (a user's notifications commit
    # in seq order, so everything at or below the last replayed seq was replayed).
    with runtime.hub.subscribe(principal, "sse") as queue:
        yield b"retry: 3000\n: connected\n\n"
        replayed_up_to = -1
        if resume is not None:
            replayed_up_to = resume
            while True:  # page by page: memory stays bounded however much was missed
                async with runtime.db.sessions() as session:
                    rows = await runtime.service.since(session, tenant_id, user_id,
                                                       replayed_up_to, REPLAY_PAGE)
                for row in rows:
                    yield _frame(row.seq, read_model(row).model_dump(mode="json",
                                                                     by_alias=True))
                if rows:
                    replayed_up_to = rows[-1].seq
                if len(rows) < REPLAY_PAGE:
                    break
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), runtime.heartbeat_seconds)
            except TimeoutError:
                yield b": heartbeat\n\n"
                continue
            if message is BEHIND or message is REVOKED:
                return  # behind: the client resumes with Last-Event-ID; revoked: 401 then
            if message["seq"] <= replayed_up_to:
                continue
            notification = await _materialize(runtime, tenant_id, message)
            if notification is not None:
                yield _frame(message["seq"], notification)


async def _materialize(runtime: Streams, tenant_id: UUID,
                       message: dict[str, Any]) -> dict[str, Any] | None:
    if "notification" in message:
        body: dict[str, Any] = message["notification"]
        return body
    async with runtime.db.sessions() as session:
        row = await runtime.service.get(session, tenant_id, UUID(message["id"]))
    return read_model(row).model_dump(mode="json", by_alias=True) if row else None


@router.websocket("/ws")
async def websocket(websocket: WebSocket) -> None:
    """WebSocket: the first client message is `{"token": "<accessToken>"}`; then the server
    sends `{"event": "ready"}` and `{"event": "notification", "id", "data"}` messages.
    A bad or missing token closes the socket with code 4401 within 5 s; so does the token
    ceasing to work later (expiry, deactivation, a role or password change). A server error
    while authenticating closes it with 1011."""
    runtime: Streams = websocket.app.state.platform.notifications
    await websocket.accept()
    try:
        first = await asyncio.wait_for(websocket.receive_json(), WS_AUTH_TIMEOUT)
        token = first.get("token") if isinstance(first, dict) else None
        if not isinstance(token, str):
            raise Unauthenticated("missing token")
        principal = await _authenticate(runtime, websocket.app.state.platform, token, None)
    except WebSocketDisconnect:
        return
    except (TimeoutError, ValueError, Unauthenticated):  # silent, not JSON, or a bad token
        await websocket.close(code=WS_UNAUTHENTICATED, reason="unauthenticated")
        return
    except Exception as exc:
        log.warning("websocket_auth_error", error=f"{type(exc).__name__}: {exc}")
        await websocket.close(code=WS_SERVER_ERROR, reason="server error")
        return
    with runtime.hub.subscribe(principal, "ws") as queue:
        await websocket.send_json({"event": "ready"})
        receiver = asyncio.create_task(_until_closed(websocket))
        try:
            while True:
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, receiver},
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    return
                message = getter.result()
                if message is BEHIND:
                    await websocket.close(code=1013, reason="too far behind; reconnect")
                    return
                if message is REVOKED:
                    await websocket.close(code=WS_UNAUTHENTICATED,
                                          reason="token expired or revoked")
                    return
                notification = await _materialize(runtime, principal.tenant_id, message)
                if notification is not None:
                    await websocket.send_json({"event": "notification",
                                               "id": str(message["seq"]),
                                               "data": notification})
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver


async def _until_closed(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive()
            if websocket.client_state.name == "DISCONNECTED":
                return


