"""Stored responses for ``Idempotency-Key``, kept 24 hours, scoped to the calling user.

Bodies are encrypted (AES-GCM, key derived from the server secret): a stored response may
hold credentials (the tokens of ``POST /v1/tenants``), and a database dump must not.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import DateTime, Integer, LargeBinary, PrimaryKeyConstraint, String, func, text
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from pantherahive.infra.db.base import Base
from pantherahive.infra.db.engine import set_tenant


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (PrimaryKeyConstraint("scope", "key"), {"schema": "platform"})

    scope: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(255))
    tenant_id: Mapped[object | None] = mapped_column(PgUUID(as_uuid=True))
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


@dataclass(frozen=True, slots=True)
class StoredResponse:
    fingerprint: bytes
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class IdempotencyStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], secret: str) -> None:
        self._sessions = sessions
        self._aead = AESGCM(
            hashlib.sha256(b"pantherahive-idempotency\0" + secret.encode()).digest()
        )

    def _seal(self, response: StoredResponse) -> bytes:
        nonce = os.urandom(12)
        plain = orjson.dumps({"h": response.headers, "b": response.body.decode("latin-1")})
        return nonce + self._aead.encrypt(nonce, plain, None)

    def _open(self, fingerprint: bytes, status: int, payload: bytes) -> StoredResponse:
        plain = orjson.loads(self._aead.decrypt(payload[:12], payload[12:], None))
        return StoredResponse(
            fingerprint=fingerprint,
            status=status,
            headers=[(k, v) for k, v in plain["h"]],
            body=plain["b"].encode("latin-1"),
        )

    async def lookup(self, scope: str, key: str, tenant_id: str | None) -> StoredResponse | None:
        async with self._sessions() as session:
            if tenant_id:
                await set_tenant(session, tenant_id)
            row = (
                await session.execute(
                    text(
                        "SELECT fingerprint, status, payload FROM platform.idempotency_keys "
                        "WHERE scope = :scope AND key = :key "
                        "AND created_at > now() - interval '24 hours'"
                    ),
                    {"scope": scope, "key": key},
                )
            ).first()
            await session.rollback()
        if row is None:
            return None
        return self._open(bytes(row.fingerprint), row.status, bytes(row.payload))

    async def save(
        self,
        session: AsyncSession,
        scope: str,
        key: str,
        tenant_id: str | None,
        response: StoredResponse,
        *,
        scope_tenant: bool = True,
    ) -> bool:
        """Claim the key in ``session``'s transaction; False if another request holds it.

        The insert waits for a concurrent holder's transaction to end, which is what makes
        a duplicate that arrives mid-flight replay the first response instead of creating.
        """
        if scope_tenant and tenant_id:
            await set_tenant(session, tenant_id)
        result = await session.execute(
            text(
                "INSERT INTO platform.idempotency_keys "
                "(scope, key, tenant_id, fingerprint, status, payload) "
                "VALUES (:scope, :key, :tenant_id, :fingerprint, :status, :payload) "
                "ON CONFLICT (scope, key) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, "
                "fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status, "
                "payload = EXCLUDED.payload, created_at = now() "
                "WHERE platform.idempotency_keys.created_at <= now() - interval '24 hours' "
                "RETURNING 1"
            ),
            {
                "scope": scope,
                "key": key,
                "tenant_id": tenant_id,
                "fingerprint": response.fingerprint,
                "status": response.status,
                "payload": self._seal(response),
            },
        )
        return result.first() is not None
