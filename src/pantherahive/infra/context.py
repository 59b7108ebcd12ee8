"""Per-request facts that logs, events and audit need, carried in a context variable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from uuid import UUID

import structlog


@dataclass
class RequestContext:
    request_id: str | None = None
    ip: str | None = None
    tenant_id: UUID | None = None
    user_id: UUID | None = None
    # The personal access token the request authenticated with: every event it emits
    # names it (``infra.bus.outbox.emit``), so what a token did can be found later.
    token_id: UUID | None = None


_current: ContextVar[RequestContext | None] = ContextVar("pantherahive_request", default=None)


def current_context() -> RequestContext:
    ctx = _current.get()
    if ctx is None:
        ctx = RequestContext()
        _current.set(ctx)
    return ctx


def begin_context(request_id: str | None, ip: str | None) -> RequestContext:
    ctx = RequestContext(request_id=request_id, ip=ip)
    _current.set(ctx)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    return ctx


def bind_principal(
    tenant_id: UUID, user_id: UUID | None, *, token_id: UUID | None = None
) -> None:
    ctx = current_context()
    ctx.tenant_id = tenant_id
    ctx.user_id = user_id
    ctx.token_id = token_id
    structlog.contextvars.bind_contextvars(
        tenant_id=str(tenant_id), user_id=str(user_id) if user_id else None
    )


@contextmanager
def caused_by(
    request_id: str | None, ip: str | None, tenant_id: UUID, user_id: UUID | None
) -> Iterator[RequestContext]:
    """Run a consumer's handler in the context of the request that caused its event, so
    the events it emits (follow-ups) carry that request id, address and actor — and
    restore the caller's context afterwards."""
    ctx = RequestContext(request_id=request_id, ip=ip, tenant_id=tenant_id, user_id=user_id)
    token = _current.set(ctx)
    try:
        with structlog.contextvars.bound_contextvars(
            request_id=request_id, tenant_id=str(tenant_id),
            user_id=str(user_id) if user_id else None,
        ):
            yield ctx
    finally:
        _current.reset(token)
