"""Where account emails (verification, password reset) go.

identity hands the single-use token to an ``AccountMessageSender`` inside the request's
transaction. The composition root (``main.py``) wires in notifications' sender, which
writes the in-app notification and the email delivery in that same transaction — so the
email exists exactly when the token does (with no SMTP relay, the delivery is logged in
development only). ``RecordingSender`` keeps the token instead, for tests and the CLI's
demo.
"""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession


class AccountMessageSender(Protocol):
    """Called inside the request's transaction (``session``), so a sender may record what it
    will send atomically with the token it was given."""

    async def send_verification(
        self, *, tenant_id: UUID, user_id: UUID, email: str | None, token: str,
        session: AsyncSession | None = None,
    ) -> None: ...

    async def send_password_reset(
        self, *, tenant_id: UUID, user_id: UUID, email: str, token: str,
        session: AsyncSession | None = None,
    ) -> None: ...


class RecordingSender:
    """Keeps what it was given, for tests and for the CLI's demo."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, UUID, str]] = []

    async def send_verification(
        self, *, tenant_id: UUID, user_id: UUID, email: str | None, token: str,
        session: AsyncSession | None = None,
    ) -> None:
        self.sent.append(("verify_email", user_id, token))

    async def send_password_reset(
        self, *, tenant_id: UUID, user_id: UUID, email: str, token: str,
        session: AsyncSession | None = None,
    ) -> None:
        self.sent.append(("password_reset", user_id, token))
