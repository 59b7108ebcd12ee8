"""The hash chain: the canonical form of an audit event and how its hash is computed.

``hash = sha256(prevHash ‖ canonical)`` where ``prevHash`` is the previous event's hash as
64 lowercase hex ASCII characters (64 zeros for a tenant's first event, ``seq`` 1) and
``canonical`` is the UTF-8 JSON of the event's fields *except* ``hash`` and ``prevHash``,
with keys sorted at every level, no whitespace, non-ASCII characters written as
themselves (not ``\\u`` escapes), ids as lowercase hyphenated UUID strings, absent
values as ``null`` and ``occurredAt`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, always
six fractional digits). Anyone holding an export or an archive segment can re-compute
the chain with nothing but a JSON library and SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

GENESIS_HASH = "0" * 64

# The fields that are hashed, in their wire (camelCase) names.
HASHED_FIELDS = (
    "id", "seq", "occurredAt", "actorId", "actorType", "action", "resourceType",
    "resourceId", "tenantId", "requestId", "ip", "changes", "data",
)


def format_timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(document: Mapping[str, Any]) -> bytes:
    """The canonical bytes of an event document (wire names, as in the API and archives)."""
    fields = {name: document.get(name) for name in HASHED_FIELDS}
    try:
        return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        # Integers beyond 64 bits; the standard library writes the very same form.
        return json.dumps(
            fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")


def dumps(value: Any) -> bytes:
    """Compact JSON (orjson, or the standard library for integers beyond 64 bits)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def compute_hash(prev_hash: str, document: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(canonical(document))
    return digest.hexdigest()


@dataclass
class ChainCheck:
    """Walks documents in seq order and remembers the first one that does not fit."""

    expected_seq: int = 1
    # None: take the first document's prevHash as given (a range that starts mid-chain).
    prev_hash: str | None = GENESIS_HASH
    checked: int = 0
    first_broken_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.first_broken_seq is None

    def feed(self, document: Mapping[str, Any]) -> bool:
        """Check one document; False once the chain is broken (stop feeding then)."""
        if self.first_broken_seq is not None:
            return False
        self.checked += 1
        seq = document.get("seq")
        if seq != self.expected_seq:
            # A missing or duplicated event: the chain breaks where the gap starts.
            self.first_broken_seq = self.expected_seq
            return False
        stored = document.get("hash")
        prev = self.prev_hash if self.prev_hash is not None else str(document.get("prevHash"))
        if document.get("prevHash") != prev or stored != compute_hash(prev, document):
            self.first_broken_seq = seq
            return False
        self.prev_hash = str(stored)
        self.expected_seq = seq + 1
        return True

    def feed_all(self, documents: Iterable[Mapping[str, Any]]) -> bool:
        return all(self.feed(document) for document in documents)

    def broken_at(self, seq: int) -> None:
        """Mark the chain broken at ``seq`` for a reason outside the documents (a missing
        or corrupted archive segment)."""
        if self.first_broken_seq is None:
            self.first_broken_seq = seq


def document(row: Any) -> dict[str, Any]:
    """An audit event (table row or restored row) as its wire document, hash included."""
    return {
        "id": str(row.id),
        "seq": row.seq,
        "occurredAt": format_timestamp(row.occurred_at),
        "actorId": str(row.actor_id) if row.actor_id is not None else None,
        "actorType": row.actor_type,
        "action": row.action,
        "resourceType": row.resource_type,
        "resourceId": row.resource_id,
        "tenantId": str(row.tenant_id),
        "requestId": row.request_id,
        "ip": row.ip,
        "changes": row.changes,
        "data": row.data,
        "hash": row.hash,
        "prevHash": row.prev_hash,
    }
