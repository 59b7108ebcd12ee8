"""Audit's wire shapes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import Field, field_serializer

from pantherahive.core.schemas import ApiModel
from pantherahive.domains.audit.chain import format_timestamp


class ActorType(StrEnum):
    USER = "user"
    SYSTEM = "system"


class AuditEventRead(ApiModel):
    id: UUID
    seq: int = Field(description="Gap-free position in the tenant's chain, from 1.")
    occurred_at: datetime = Field(
        description="When the change happened; always UTC with six fractional digits, "
        "exactly as hashed."
    )
    actor_id: UUID | None
    actor_type: ActorType
    action: str = Field(description="The event type, e.g. `task.updated`.")
    resource_type: str
    resource_id: str
    tenant_id: UUID
    request_id: str | None
    ip: str | None
    changes: dict[str, Any] = Field(
        description="`{field: [old, new]}` for updates, `{field: [null, value]}` for creations."
    )
    data: dict[str, Any] = Field(
        description="The rest of the event's payload (e.g. the reason of a failed login)."
    )
    hash: str = Field(description="sha256(prevHash ‖ canonical JSON), lowercase hex.")
    prev_hash: str = Field(description="The previous event's hash; 64 zeros for seq 1.")

    @field_serializer("occurred_at")
    def _occurred_at(self, value: datetime) -> str:
        return format_timestamp(value)


class ChainVerification(ApiModel):
    ok: bool
    checked: int = Field(description="Events examined, archived and live.")
    first_broken_seq: int | None = Field(
        description="The first seq whose hash, link or position does not fit; null when ok."
    )
