"""identity's ``AccountMessageSender``, backed by notifications.

identity calls it inside the request's transaction with the single-use token; the
notification and its email delivery are written in that same transaction, so the email
exists exactly when the token does. The token goes into the rendered email only (the
delivery's payload, wiped once the delivery is final) — never into the notification
document or an event.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.notifications.catalog import (
    ACCOUNT_PASSWORD_RESET,
    ACCOUNT_VERIFY_EMAIL,
)
from pantherahive.domains.notifications.inbox.service import Draft, NotificationService
from pantherahive.infra.logging import get_logger

log = get_logger("pantherahive.notifications.sender")


class NotificationSender:
    def __init__(self, service: NotificationService) -> None:
        self.service = service

    async def send_verification(
        self, *, tenant_id: UUID, user_id: UUID, email: str | None, token: str,
        session: AsyncSession | None = None,
    ) -> None:
        await self._send(
            session, tenant_id, user_id, email, token, ACCOUNT_VERIFY_EMAIL,
            title="Verify your email address",
            body="We sent you an email with a link to confirm your address.",
        )

    async def send_password_reset(
        self, *, tenant_id: UUID, user_id: UUID, email: str, token: str,
        session: AsyncSession | None = None,
    ) -> None:
        await self._send(
            session, tenant_id, user_id, email, token, ACCOUNT_PASSWORD_RESET,
            title="Password reset requested",
            body="We sent you an email to reset your password. Not you? Ignore it.",
        )

    async def _send(
        self, session: AsyncSession | None, tenant_id: UUID, user_id: UUID, email: str | None,
        token: str, notification_type: str, *, title: str, body: str,
    ) -> None:
        """Write the notification and its email delivery in identity's transaction; with
        no transaction (or no address) there is nothing to send with, which is logged."""
        if session is None or email is None:
            log.warning("account_email_not_sent",
                        kind=notification_type.removeprefix("account."), user_id=str(user_id))
            return
        await self.service.notify(session, tenant_id, [Draft(
            user_id=user_id, type=notification_type, title=title, body=body,
            email=email, secret_context={"token": token},
        )])
