"""Response bodies of the real-time routes (camelCase on the wire)."""

from __future__ import annotations

from pydantic import Field

from pantherahive.core.schemas import ApiModel


class StreamTicketRead(ApiModel):
    ticket: str
    expires_in: int = Field(description="Seconds the ticket stays valid; it works once.")
