"""Webhook routes (ADMIN): thin — authenticate, call one service function."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from pantherahive.core.pagination import DEFAULT_LIMIT
from pantherahive.core.schemas import Page
from pantherahive.domains.notifications.dependencies import DeliveryId, WebhookId
from pantherahive.domains.notifications.webhooks.schemas import (
    WebhookCreate,
    WebhookDeliveryRead,
    WebhookRead,
    WebhookSecret,
    WebhookUpdate,
    WebhookWithSecret,
)
from pantherahive.domains.notifications.webhooks.service import WebhookService
from pantherahive.infra.http.listing import Limit
from pantherahive.infra.http.problems import problem_responses as _problems
from pantherahive.infra.http.unit_of_work import RequestSession
from pantherahive.infra.security.dependency import CurrentAuth
from pantherahive.infra.security.scopes import Scope, scoped


def _service(request: Request) -> WebhookService:
    service: WebhookService = request.app.state.platform.notifications.webhooks
    return service


Webhooks = Annotated[WebhookService, Depends(_service)]
router = APIRouter(
    prefix="/v1/webhooks", tags=["webhooks"], dependencies=[scoped(Scope.ADMIN)]
)


@router.get("", responses=_problems(401, 403, 422))
async def list_webhooks(auth: CurrentAuth, session: RequestSession, service: Webhooks,
                        limit: Limit = DEFAULT_LIMIT,
                        cursor: str | None = None) -> Page[WebhookRead]:
    """(ADMIN) The tenant's webhook subscriptions (secrets are never shown again)."""
    return await service.list_page(session, auth, cursor=cursor, limit=limit)


@router.post("", status_code=status.HTTP_201_CREATED, responses=_problems(401, 403, 422))
async def create_webhook(body: WebhookCreate, auth: CurrentAuth, session: RequestSession,
                         service: Webhooks) -> WebhookWithSecret:
    """(ADMIN) Subscribe an https URL to event types (`*` = all). The secret — yours or a
    generated one — is in this response only. Loopback/private targets are refused."""
    return await service.create(session, auth, body)


@router.get("/{id:uuid}", responses=_problems(401, 403, 404))
async def get_webhook(webhook_id: WebhookId, auth: CurrentAuth, session: RequestSession,
                      service: Webhooks) -> WebhookRead:
    """(ADMIN) One subscription."""
    return await service.get(session, auth, webhook_id)


@router.patch("/{id:uuid}", responses=_problems(401, 403, 404, 422))
async def update_webhook(webhook_id: WebhookId, body: WebhookUpdate, auth: CurrentAuth,
                         session: RequestSession, service: Webhooks) -> WebhookRead:
    """(ADMIN) Change URL, events, or re-enable (which resets the failure count)."""
    return await service.update(session, auth, webhook_id, body)


@router.delete("/{id:uuid}", status_code=status.HTTP_204_NO_CONTENT,
                 responses=_problems(401, 403, 404))
async def delete_webhook(webhook_id: WebhookId, auth: CurrentAuth, session: RequestSession,
                         service: Webhooks) -> Response:
    """(ADMIN) Remove the subscription and its delivery log."""
    await service.delete(session, auth, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{id:uuid}/deliveries", responses=_problems(401, 403, 404, 422))
async def webhook_deliveries(webhook_id: WebhookId, auth: CurrentAuth, session: RequestSession,
                             service: Webhooks, limit: Limit = DEFAULT_LIMIT,
                             cursor: str | None = None) -> Page[WebhookDeliveryRead]:
    """(ADMIN) The delivery log: status, attempts, the receiver's status code, timing."""
    return await service.deliveries(session, auth, webhook_id, cursor=cursor, limit=limit)


@router.post("/{id:uuid}/deliveries/{deliveryId:uuid}/redeliver",
               status_code=status.HTTP_202_ACCEPTED, responses=_problems(401, 403, 404))
async def redeliver(webhook_id: WebhookId, delivery_id: DeliveryId, auth: CurrentAuth,
                    session: RequestSession, service: Webhooks) -> WebhookDeliveryRead:
    """(ADMIN) Send that event again (a new delivery, same event id)."""
    return await service.redeliver(session, auth, webhook_id, delivery_id)


@router.post("/{id:uuid}/rotate-secret", responses=_problems(401, 403, 404))
async def rotate_secret(webhook_id: WebhookId, auth: CurrentAuth, session: RequestSession,
                        service: Webhooks) -> WebhookSecret:
    """(ADMIN) A new secret, shown once; the old one keeps signing (a second `v1=`) for 24 h."""
    return await service.rotate_secret(session, auth, webhook_id)

