"""The personal access tokens table (schema ``identity``, migration 0016)."""

from __future__ import annotations

from sqlalchemy import LargeBinary, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from pantherahive.domains.identity.tables import SCHEMA
from pantherahive.infra.db.base import Base, CreatedAt, TenantRow, Timestamp, Uuid


class AccessToken(TenantRow, Base):
    __tablename__ = "access_tokens"
    __table_args__ = SCHEMA

    user_id: Mapped[Uuid]
    name: Mapped[str] = mapped_column(String(100))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(32)))
    prefix: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    created_at: Mapped[CreatedAt]
    expires_at: Mapped[Timestamp | None]
    last_used_at: Mapped[Timestamp | None]
    revoked_at: Mapped[Timestamp | None]
