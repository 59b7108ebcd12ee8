"""Object storage for archived audit segments: one library (obstore) for a local directory
and S3-compatible stores.

A segment is one tenant's contiguous seq range as gzip-compressed NDJSON, one wire
document per line (the same documents the API and the export return, hashes included),
next to a JSON manifest that states its range, its end hashes, its count and the SHA-256
of the compressed file:

    <tenant_id>/<first_seq:020d>-<last_seq:020d>.ndjson.gz
    <tenant_id>/<first_seq:020d>-<last_seq:020d>.manifest.json
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import obstore
import orjson
from obstore.store import LocalStore, S3Store

from pantherahive.domains.audit.chain import dumps


@dataclass(frozen=True)
class ArchiveConfig:
    """Where segments go (``file://``/a path, or ``s3://bucket/prefix``) and how big they get."""

    url: str
    segment_events: int = 50_000
    retention_days: int = 365
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_allow_http: bool = False


class ArchiveStore:
    def __init__(self, config: ArchiveConfig) -> None:
        self.config = config
        self._store: S3Store | LocalStore | None = None

    def _open(self) -> S3Store | LocalStore:
        # Opened on first use, so an API that never verifies archived ranges needs no
        # credentials and creates no directory.
        if self._store is None:
            url = self.config.url
            scheme = urlsplit(url).scheme
            if scheme == "s3":
                s3: dict[str, Any] = {"region": self.config.s3_region}
                if self.config.s3_endpoint:
                    s3["endpoint"] = self.config.s3_endpoint
                if self.config.s3_access_key_id:
                    s3["access_key_id"] = self.config.s3_access_key_id
                if self.config.s3_secret_access_key:
                    s3["secret_access_key"] = self.config.s3_secret_access_key
                self._store = S3Store.from_url(
                    url,
                    config=s3,  # type: ignore[arg-type]
                    client_options={"allow_http": self.config.s3_allow_http},
                )
            elif scheme in {"", "file"}:
                path = Path(urlsplit(url).path if scheme == "file" else url).expanduser()
                path.mkdir(parents=True, exist_ok=True)
                self._store = LocalStore(prefix=path.resolve())
            else:
                raise ValueError(f"unsupported audit archive URL scheme {scheme}://")
        return self._store

    async def put(self, path: str, data: bytes) -> None:
        await obstore.put_async(self._open(), path, data)

    async def get(self, path: str) -> bytes:
        result = await obstore.get_async(self._open(), path)
        return bytes(await result.bytes_async())


@dataclass(frozen=True)
class Segment:
    tenant_id: UUID
    first_seq: int
    last_seq: int
    first_prev_hash: str
    first_hash: str
    last_hash: str
    count: int
    first_occurred_at: str
    last_occurred_at: str
    sha256: str
    size: int
    path: str
    manifest_path: str

    def manifest(self) -> bytes:
        return orjson.dumps(
            {
                "format": "pantherahive.audit.segment/1",
                "tenantId": str(self.tenant_id),
                "firstSeq": self.first_seq,
                "lastSeq": self.last_seq,
                "firstPrevHash": self.first_prev_hash,
                "firstHash": self.first_hash,
                "lastHash": self.last_hash,
                "count": self.count,
                "firstOccurredAt": self.first_occurred_at,
                "lastOccurredAt": self.last_occurred_at,
                "sha256": self.sha256,
                "bytes": self.size,
                "path": self.path,
            },
            option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2,
        )


def segment_paths(tenant_id: UUID, first_seq: int, last_seq: int) -> tuple[str, str]:
    stem = f"{tenant_id}/{first_seq:020d}-{last_seq:020d}"
    return f"{stem}.ndjson.gz", f"{stem}.manifest.json"


def encode_segment(tenant_id: UUID, documents: Sequence[dict[str, Any]]) -> tuple[Segment, bytes]:
    """Compress documents (one tenant, consecutive seqs) into a segment and its manifest."""
    ndjson = b"".join(dumps(doc) + b"\n" for doc in documents)
    # mtime=0: the same events always give the same bytes, so a re-run is harmless.
    blob = gzip.compress(ndjson, compresslevel=6, mtime=0)
    first, last = documents[0], documents[-1]
    path, manifest_path = segment_paths(tenant_id, first["seq"], last["seq"])
    segment = Segment(
        tenant_id=tenant_id,
        first_seq=first["seq"],
        last_seq=last["seq"],
        first_prev_hash=first["prevHash"],
        first_hash=first["hash"],
        last_hash=last["hash"],
        count=len(documents),
        first_occurred_at=first["occurredAt"],
        last_occurred_at=last["occurredAt"],
        sha256=hashlib.sha256(blob).hexdigest(),
        size=len(blob),
        path=path,
        manifest_path=manifest_path,
    )
    return segment, blob


def decode_segment(blob: bytes) -> Iterator[dict[str, Any]]:
    for line in gzip.decompress(blob).splitlines():
        if line:
            document: dict[str, Any] = orjson.loads(line)
            yield document
