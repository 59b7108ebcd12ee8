"""Notifications' HTTP routes, assembled from its parts: the inbox and the real-time
streams under ``/v1/notifications``, webhooks under ``/v1/webhooks``."""

from __future__ import annotations

from fastapi import APIRouter

from pantherahive.domains.notifications.inbox.router import router as inbox
from pantherahive.domains.notifications.realtime.router import router as realtime
from pantherahive.domains.notifications.webhooks.router import router as webhooks

router = APIRouter()
router.include_router(inbox)
router.include_router(realtime)

__all__ = ["router", "webhooks"]
