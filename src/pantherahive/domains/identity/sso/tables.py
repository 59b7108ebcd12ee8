"""The SSO tables (schema ``identity``); the DDL lives in migration 0018."""

from __future__ import annotations

from sqlalchemy import Boolean, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from pantherahive.infra.db.base import Base, CreatedAt, TenantRow, Timestamp, Timestamps, Uuid

SCHEMA = {"schema": "identity"}


class TenantSso(Timestamps, Base):
    """One row per tenant that configured SSO; the client secret is AES-GCM encrypted
    (``infra.security.crypto``) and bound to its tenant."""

    __tablename__ = "tenant_sso"
    __table_args__ = SCHEMA

    tenant_id: Mapped[Uuid] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(255))
    client_secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    enabled: Mapped[bool] = mapped_column(Boolean)
    jit_provisioning: Mapped[bool] = mapped_column(Boolean)
    app_redirect_url: Mapped[str | None] = mapped_column(String(2000))


class OidcLoginState(TenantRow, Base):
    """One sign-in between ``start`` and ``callback``: single-use, short-lived, found by the
    hash of its ``state`` (the state itself only travels through the browser), and bound to
    the browser that started it by the hash of a cookie's value. The issuer and client id
    are those the sign-in started with, so a settings change mid-flight cannot make a token
    for one client count for another."""

    __tablename__ = "oidc_login_states"
    __table_args__ = SCHEMA

    state_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    browser_hash: Mapped[bytes] = mapped_column(LargeBinary)
    nonce: Mapped[str] = mapped_column(String(100))
    code_verifier: Mapped[str] = mapped_column(String(128))
    issuer: Mapped[str] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[CreatedAt]
    expires_at: Mapped[Timestamp]
    used_at: Mapped[Timestamp | None]


class SsoLink(Base):
    """This user is the issuer's ``subject``: made at the user's first sign-in through that
    issuer (by verified email), then the sign-in's key. A later identity with the same
    email but another subject is refused rather than given the account."""

    __tablename__ = "sso_links"
    __table_args__ = SCHEMA

    tenant_id: Mapped[Uuid] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(500), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[Uuid]
    created_at: Mapped[CreatedAt]
