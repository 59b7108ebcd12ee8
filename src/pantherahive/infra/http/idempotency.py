"""Stored responses for ``Idempotency-Key``, kept 24 hours, scoped to the calling user (or,
for callers without a token, their IP address).

A stored response may hold credentials (the tokens of sign-up, login and refresh, a
webhook secret), and a database dump must not give them away: bodies and headers are
encrypted (AES-GCM, key derived from the server secret), and the request fingerprint is
an HMAC under another derived key — a plain hash of a login body would be a fast,
unsalted hash of its password. Rows past the 24 hours are never replayed, and
:meth:`IdempotencyStore.purge_forever` deletes them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import datetime

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import DateTime, Integer, LargeBinary, PrimaryKeyConstraint, String, func, text
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from pantherahive.infra.db.base import Base
from pantherahive.infra.db.engine import set_tenant
from pantherahive.infra.logging import get_logger

# The status of a claimed key whose request is still running. It never commits: the
# claiming transaction either writes the final answer over it or takes it back.
IN_FLIGHT = 0
PURGE_INTERVAL_SECONDS = 600
PURGE_BATCH = 1000
log = get_logger(__name__)


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
        self._mac_key = hashlib.sha256(
            b"pantherahive-idempotency-fingerprint\0" + secret.encode()
        ).digest()

    def fingerprint(self, path: str, query: bytes, body: bytes) -> bytes:
        """What makes two requests "the same request" — keyed, so it cannot be inverted."""
        message = b"\0".join([path.encode(), query, body])
        return hmac.new(self._mac_key, message, hashlib.sha256).digest()

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
        """The committed answer stored under this key in the last 24 hours, if any."""
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
            if row is None or row.status == IN_FLIGHT:
                return None
            try:
                return self._open(bytes(row.fingerprint), row.status, bytes(row.payload))
            except InvalidTag:
                # Sealed under a previous server secret: unreadable, so as good as expired.
                log.warning("idempotency_key_unreadable", scope=scope)
                await session.execute(
                    text("DELETE FROM platform.idempotency_keys WHERE scope = :s AND key = :k"),
                    {"s": scope, "k": key},
                )
                await session.commit()
                return None

    async def claim(
        self,
        session: AsyncSession,
        scope: str,
        key: str,
        tenant_id: str | None,
        fingerprint: bytes,
    ) -> bool:
        """Take the key in ``session``'s transaction before the request runs; False if it is
        taken.

        A duplicate that arrives while the holder is still running blocks on the key's
        primary key until the holder's transaction ends: then it finds the holder's answer
        (False, and the caller replays it) or, if the holder rolled back, takes the key.
        A key older than 24 hours is taken over.
        """
        if tenant_id:
            await set_tenant(session, tenant_id)
        result = await session.execute(
            text(
                "INSERT INTO platform.idempotency_keys "
                "(scope, key, tenant_id, fingerprint, status, payload) "
                "VALUES (:scope, :key, :tenant_id, :fingerprint, :status, '') "
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
                "fingerprint": fingerprint,
                "status": IN_FLIGHT,
            },
        )
        return result.first() is not None

    async def record(
        self, session: AsyncSession, scope: str, key: str, response: StoredResponse
    ) -> None:
        """Write the final answer over this transaction's claim."""
        await session.execute(
            text(
                "UPDATE platform.idempotency_keys SET status = :status, payload = :payload "
                "WHERE scope = :scope AND key = :key"
            ),
            {
                "scope": scope,
                "key": key,
                "status": response.status,
                "payload": self._seal(response),
            },
        )

    async def release(self, session: AsyncSession, scope: str, key: str) -> None:
        """Give the claim back: the answer is not one to replay, the writes still commit."""
        await session.execute(
            text("DELETE FROM platform.idempotency_keys WHERE scope = :scope AND key = :key"),
            {"scope": scope, "key": key},
        )

    async def purge_expired(self, limit: int = PURGE_BATCH) -> int:
        """Delete up to ``limit`` rows past their 24 hours, every tenant's (through a
        SECURITY DEFINER function: RLS shows the app one tenant at a time)."""
        async with self._sessions() as session:
            deleted = (
                await session.execute(
                    text("SELECT platform.purge_idempotency_keys(:limit)"), {"limit": limit}
                )
            ).scalar_one()
            await session.commit()
        return int(deleted)

    async def purge_forever(self, interval: float = PURGE_INTERVAL_SECONDS) -> None:
        """Background task: purge expired keys now and then; an outage only delays it."""
        while True:
            try:
                while await self.purge_expired() >= PURGE_BATCH:
                    pass
            except Exception as exc:
                log.warning("idempotency_purge_failed", error=type(exc).__name__)
            await asyncio.sleep(interval)
