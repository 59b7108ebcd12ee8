"""Identity's tables (schema ``identity``); the DDL itself lives in the migrations."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pantherahive.infra.db.base import (
    Base,
    CreatedAt,
    TenantRow,
    Timestamp,
    Timestamps,
    Uuid,
)

SCHEMA = {"schema": "identity"}


class Tenant(Timestamps, Base):
    __tablename__ = "tenants"
    __table_args__ = SCHEMA

    id: Mapped[Uuid] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    require_2fa: Mapped[bool] = mapped_column(Boolean, default=False)


class User(TenantRow, Timestamps, Base):
    __tablename__ = "users"
    __table_args__ = SCHEMA

    username: Mapped[str] = mapped_column(String(50))
    email: Mapped[str | None] = mapped_column(String(254))
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(24))
    password_hash: Mapped[str] = mapped_column(Text)
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    email_verified_at: Mapped[Timestamp | None]


class RefreshToken(TenantRow, Base):
    __tablename__ = "refresh_tokens"
    __table_args__ = SCHEMA

    user_id: Mapped[Uuid]
    family_id: Mapped[Uuid]
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    created_at: Mapped[CreatedAt]
    expires_at: Mapped[Timestamp]
    used_at: Mapped[Timestamp | None]
    revoked_at: Mapped[Timestamp | None]


class ActionToken(TenantRow, Base):
    """Single-use, expiring tokens for email verification and password reset."""

    __tablename__ = "action_tokens"
    __table_args__ = SCHEMA

    user_id: Mapped[Uuid]
    purpose: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    created_at: Mapped[CreatedAt]
    expires_at: Mapped[Timestamp]
    used_at: Mapped[Timestamp | None]


class UserSession(TenantRow, Base):
    """A login on one device: a refresh-token family (its tokens' ``family_id`` is this
    id). Access tokens name it (claim ``sid``); revoking it ends them at once."""

    __tablename__ = "sessions"
    __table_args__ = SCHEMA

    user_id: Mapped[Uuid]
    user_agent: Mapped[str | None] = mapped_column(String(400))
    ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[Timestamp]
    last_used_at: Mapped[Timestamp]
    expires_at: Mapped[Timestamp]
    revoked_at: Mapped[Timestamp | None]


class TotpCredential(Base):
    """A user's TOTP secret (sealed), pending until ``confirmed_at``; ``last_step`` is the
    time step of the last accepted code, so no code is accepted twice."""

    __tablename__ = "totp_credentials"
    __table_args__ = SCHEMA

    user_id: Mapped[Uuid] = mapped_column(primary_key=True)
    tenant_id: Mapped[Uuid]
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    confirmed_at: Mapped[Timestamp | None]
    last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[CreatedAt]


class RecoveryCode(TenantRow, Base):
    __tablename__ = "recovery_codes"
    __table_args__ = SCHEMA

    user_id: Mapped[Uuid]
    code_hash: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[CreatedAt]
    used_at: Mapped[Timestamp | None]


class MfaChallenge(TenantRow, Base):
    """The single-use proof that a login's password step passed: ``verify`` awaits a code,
    ``enroll`` lets a user whose tenant requires 2FA enroll before the login completes."""

    __tablename__ = "mfa_challenges"
    __table_args__ = SCHEMA

    user_id: Mapped[Uuid]
    purpose: Mapped[str] = mapped_column(String(10))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    created_at: Mapped[CreatedAt]
    expires_at: Mapped[Timestamp]
    used_at: Mapped[Timestamp | None]
