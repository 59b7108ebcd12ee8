"""Audit's HTTP routes (ADMIN only): search, one event, NDJSON export, chain verification.

``/export`` and ``/verify`` are declared before ``/{id:uuid}`` so they are not taken for ids.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from pantherahive.core.pagination import DEFAULT_LIMIT
from pantherahive.core.schemas import Page, Rfc3339DateTime
from pantherahive.domains.audit.repository import EventFilters
from pantherahive.domains.audit.schemas import AuditEventRead, ChainVerification
from pantherahive.domains.audit.service import AuditService
from pantherahive.infra.http.listing import Cursor, Limit
from pantherahive.infra.http.paths import uuid_path
from pantherahive.infra.http.problems import problem_responses as _problems
from pantherahive.infra.http.unit_of_work import RequestSession, end_request_session
from pantherahive.infra.security.dependency import CurrentAuth
from pantherahive.infra.security.scopes import Scope, scoped

AuditEventId = Annotated[UUID, uuid_path("id", "The audit event.")]
NDJSON = "application/x-ndjson"


async def _audit(request: Request) -> AuditService:
    service: AuditService = request.app.state.platform.audit
    return service


Audit = Annotated[AuditService, Depends(_audit)]


async def _filters(
    actor_id: Annotated[UUID | None, Query(alias="actorId")] = None,
    action: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    resource_type: Annotated[
        str | None, Query(alias="resourceType", min_length=1, max_length=50)
    ] = None,
    resource_id: Annotated[
        str | None, Query(alias="resourceId", min_length=1, max_length=100)
    ] = None,
    occurred_from: Annotated[
        Rfc3339DateTime | None,
        Query(alias="from", description="Inclusive lower bound of occurredAt."),
    ] = None,
    occurred_to: Annotated[
        Rfc3339DateTime | None,
        Query(alias="to", description="Inclusive upper bound of occurredAt."),
    ] = None,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=200,
              description="Full text (websearch syntax) over action, resource and changes."),
    ] = None,
) -> EventFilters:
    return EventFilters(
        actor_id=actor_id,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        occurred_from=occurred_from,
        occurred_to=occurred_to,
        q=q,
    )


Filters = Annotated[EventFilters, Depends(_filters)]
router = APIRouter(
    prefix="/v1/audit-events", tags=["audit"], dependencies=[scoped(Scope.AUDIT_READ)]
)


@router.get("", responses=_problems(401, 403, 422))
async def list_audit_events(
    auth: CurrentAuth,
    session: RequestSession,
    audit: Audit,
    filters: Filters,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[AuditEventRead]:
    """The tenant's audit trail, newest first by (`occurredAt`, `seq`) — the same as `seq`
    order unless events arrived out of order. Filters combine with AND."""
    items, next_cursor = await audit.list_events(
        session, auth, filters=filters, cursor=cursor, limit=limit
    )
    return Page[AuditEventRead].of(items, next_cursor)


@router.get(
    "/export",
    responses={
        200: {"description": "One AuditEvent JSON per line, oldest first.",
              "content": {NDJSON: {}}},
        **_problems(401, 403, 422),
    },
    response_class=StreamingResponse,
)
async def export_audit_events(
    request: Request, auth: CurrentAuth, session: RequestSession, audit: Audit, filters: Filters
) -> StreamingResponse:
    """Stream the events matching the filters as NDJSON, oldest first, from one consistent
    snapshot; each line is exactly what `GET /v1/audit-events/{id}` returns, so the chain
    can be re-computed from an unfiltered export."""
    await audit.authorize_export(session, auth)
    await end_request_session(request)
    sessions = request.app.state.platform.db.sessions
    return StreamingResponse(
        audit.export(sessions, auth.tenant_id, filters),
        media_type=NDJSON,
        headers={"Content-Disposition": 'attachment; filename="audit-events.ndjson"'},
    )


@router.get("/verify", responses=_problems(401, 403, 422))
async def verify_audit_chain(
    request: Request,
    auth: CurrentAuth,
    session: RequestSession,
    audit: Audit,
    from_seq: Annotated[int, Query(alias="fromSeq", ge=1)] = 1,
    to_seq: Annotated[int | None, Query(alias="toSeq", ge=1)] = None,
) -> ChainVerification:
    """Re-compute the tenant's hash chain over archived segments and live events, from
    one consistent snapshot; `firstBrokenSeq` is the first event whose hash, link or
    position is wrong.

    The cost is linear in the events checked: every archived segment overlapping the
    range is downloaded and re-hashed, then the live rows are read 5 000 at a time. For a
    large trail verify a range (`fromSeq`..`toSeq`; `fromSeq`'s link to the event before
    it is taken as stored, and the chain head is checked only when `toSeq` is omitted),
    or run `pantherahive audit verify` out of band."""
    await audit.authorize_verify(session, auth)
    await end_request_session(request)
    return await audit.verify(
        request.app.state.platform.db.sessions, auth.tenant_id, from_seq=from_seq, to_seq=to_seq
    )


@router.get("/{id:uuid}", responses=_problems(401, 403, 404))
async def get_audit_event(
    event_id: AuditEventId, auth: CurrentAuth, session: RequestSession, audit: Audit
) -> AuditEventRead:
    """One audit event of the caller's tenant; any other id is 404."""
    return AuditEventRead.model_validate(await audit.get_event(session, auth, event_id))
