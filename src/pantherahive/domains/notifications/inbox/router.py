"""The inbox's routes: the caller's notifications, preferences, and (ADMIN) the deliveries
log. Thin: authenticate, call one service function."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status

from pantherahive.core.pagination import DEFAULT_LIMIT
from pantherahive.core.schemas import Page
from pantherahive.domains.notifications.dependencies import NotificationId
from pantherahive.domains.notifications.inbox.schemas import (
    DeliveryRead,
    NotificationRead,
    PreferencesRead,
    PreferencesUpdate,
    UnreadCount,
)
from pantherahive.domains.notifications.inbox.service import NotificationService
from pantherahive.infra.http.listing import Limit
from pantherahive.infra.http.problems import problem_responses as _problems
from pantherahive.infra.http.unit_of_work import RequestSession
from pantherahive.infra.security.dependency import CurrentAuth
from pantherahive.infra.security.scopes import Scope, scoped


def _service(request: Request) -> NotificationService:
    service: NotificationService = request.app.state.platform.notifications.service
    return service


Notifications = Annotated[NotificationService, Depends(_service)]
router = APIRouter(
    prefix="/v1/notifications", tags=["notifications"],
    dependencies=[scoped(Scope.NOTIFICATIONS_READ, Scope.NOTIFICATIONS_WRITE)],
)


@router.get("", responses=_problems(401, 422))
async def list_notifications(
    auth: CurrentAuth, session: RequestSession, service: Notifications,
    unread: bool = False, limit: Limit = DEFAULT_LIMIT, cursor: str | None = None,
) -> Page[NotificationRead]:
    """The caller's notifications, newest first; `unread=true` keeps the unread ones."""
    return await service.list_page(session, auth, unread=unread, cursor=cursor, limit=limit)


@router.get("/unread-count", responses=_problems(401))
async def unread_count(auth: CurrentAuth, session: RequestSession,
                       service: Notifications) -> UnreadCount:
    """How many of the caller's notifications are unread."""
    return UnreadCount(count=await service.unread_count(session, auth))


@router.post("/read-all", status_code=status.HTTP_204_NO_CONTENT, responses=_problems(401))
async def read_all(auth: CurrentAuth, session: RequestSession, service: Notifications) -> Response:
    """Mark every notification of the caller read."""
    await service.mark_all_read(session, auth)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/preferences", responses=_problems(401))
async def get_preferences(auth: CurrentAuth, session: RequestSession,
                          service: Notifications) -> PreferencesRead:
    """Per notification type, which channels (inApp, email, sms) are on; defaults included."""
    return await service.preferences(session, auth)


@router.put("/preferences", responses=_problems(401, 422))
async def put_preferences(body: PreferencesUpdate, auth: CurrentAuth, session: RequestSession,
                          service: Notifications) -> PreferencesRead:
    """Change channels per type (partial) and the SMS phone number. Switching off in-app or
    email for an account-security type (verify email, password reset) is a 422."""
    return await service.update_preferences(session, auth, body)


@router.get("/deliveries", responses=_problems(401, 403, 422))
async def list_deliveries(
    auth: CurrentAuth, session: RequestSession, service: Notifications,
    limit: Limit = DEFAULT_LIMIT, cursor: str | None = None,
    delivery_status: Annotated[Literal["pending", "sent", "failed"] | None,
                               Query(alias="status")] = None,
) -> Page[DeliveryRead]:
    """(ADMIN) Every channel delivery of the tenant, newest first."""
    return await service.deliveries(session, auth, cursor=cursor, limit=limit,
                                    status=delivery_status)


@router.post("/{id:uuid}/read", status_code=status.HTTP_204_NO_CONTENT,
             responses=_problems(401, 404))
async def read_one(notification_id: NotificationId, auth: CurrentAuth, session: RequestSession,
                   service: Notifications) -> Response:
    """Mark one of the caller's notifications read (idempotent)."""
    await service.mark_read(session, auth, notification_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


