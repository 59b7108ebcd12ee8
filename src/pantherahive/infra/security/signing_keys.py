"""The access-token signing keys: Ed25519 key pairs in one directory that every process of a
fleet shares (a volume, a mounted secret), and a manifest naming the key that signs.

The directory holds ``keys.json`` (``{"active": kid, "keys": [{"kid", "createdAt",
"retiredAt", "verifyUntil"}]}``) and one ``<kid>.pem`` (PKCS#8, mode 0600) per key.

A key is *published* once added (every process verifies with it and
``/.well-known/jwks.json`` lists it), *active* while it signs new tokens, *retired* when it
no longer signs but still verifies until ``verifyUntil`` (by then every token it signed has
expired, so nobody is logged out), and gone once pruned.

Writers (the ``pantherahive keys`` commands, a first start in development) hold an exclusive
lock on ``.lock`` and replace files by renaming a complete temporary file over them, so a
reader never sees half a manifest. Readers compare the manifest with the bytes they last
read (a few hundred, at most once a second) and reload without a restart.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from pantherahive.core import clock
from pantherahive.infra.logging import get_logger

if TYPE_CHECKING:
    from pantherahive.settings import Settings

MANIFEST = "keys.json"
KID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# How long a running process may go on using what it read before it looks at the manifest
# again (one stat). A token whose kid it does not know makes it look at once.
RELOAD_INTERVAL_SECONDS = 1.0
KeyStatus = Literal["active", "published", "retired", "expired"]
log = get_logger("pantherahive.keys")


class SigningKeyError(Exception):
    """A key operation that cannot be done as asked (the message says why)."""


class SigningKeysMissing(SigningKeyError):
    """No usable key ring where the settings point: the process must not start."""


@dataclass(frozen=True, slots=True)
class KeyEntry:
    kid: str
    created_at: datetime
    retired_at: datetime | None = None
    verify_until: datetime | None = None

    def verifies_at(self, moment: datetime) -> bool:
        return self.verify_until is None or moment < self.verify_until

    def to_json(self) -> dict[str, str | None]:
        return {
            "kid": self.kid,
            "createdAt": self.created_at.isoformat(),
            "retiredAt": self.retired_at.isoformat() if self.retired_at else None,
            "verifyUntil": self.verify_until.isoformat() if self.verify_until else None,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> KeyEntry:
        kid = raw["kid"]
        if not isinstance(kid, str) or not KID_PATTERN.match(kid):
            raise ValueError(f"invalid kid {kid!r}")
        retired, until = raw.get("retiredAt"), raw.get("verifyUntil")
        return cls(
            kid=kid,
            created_at=datetime.fromisoformat(raw["createdAt"]),
            retired_at=datetime.fromisoformat(retired) if retired else None,
            verify_until=datetime.fromisoformat(until) if until else None,
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    active: str | None
    keys: tuple[KeyEntry, ...]

    def entry(self, kid: str) -> KeyEntry | None:
        return next((key for key in self.keys if key.kid == kid), None)

    def status(self, entry: KeyEntry, moment: datetime) -> KeyStatus:
        if entry.kid == self.active:
            return "active"
        if entry.retired_at is None:
            return "published"
        return "retired" if entry.verifies_at(moment) else "expired"

    def to_bytes(self) -> bytes:
        document = {"active": self.active, "keys": [key.to_json() for key in self.keys]}
        return json.dumps(document, indent=2).encode("utf-8") + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            raw = json.loads(data)
            keys = tuple(KeyEntry.from_json(entry) for entry in raw["keys"])
            active = raw.get("active")
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{MANIFEST} is malformed ({exc!r})") from exc
        if active is not None and not any(key.kid == active for key in keys):
            raise ValueError(f"the active kid {active!r} is not among the keys")
        return cls(active=active, keys=keys)


@dataclass(frozen=True, slots=True)
class KeySet:
    """What a process signs and verifies with, as last read from the directory."""

    active_kid: str | None
    signer: Ed25519PrivateKey | None
    public_keys: dict[str, Ed25519PublicKey]
    entries: dict[str, KeyEntry]

    def public_key(self, kid: str, moment: datetime) -> Ed25519PublicKey | None:
        """The key that verifies tokens carrying ``kid``, or None: unknown, or retired and
        past its ``verifyUntil`` (a prune would delete it)."""
        entry = self.entries.get(kid)
        if entry is None or not entry.verifies_at(moment):
            return None
        return self.public_keys.get(kid)

    def jwks(self, moment: datetime) -> list[dict[str, str]]:
        """The public JWKs (RFC 8037) of every key that verifies now."""
        return [
            public_jwk(kid, key)
            for kid, key in self.public_keys.items()
            if self.entries[kid].verifies_at(moment)
        ]


def public_jwk(kid: str, key: Ed25519PublicKey) -> dict[str, str]:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}


class KeyRing:
    """One directory of signing keys, read lazily and re-read when its manifest changes."""

    def __init__(
        self, directory: Path, *, reload_interval_seconds: float = RELOAD_INTERVAL_SECONDS
    ) -> None:
        self.directory = directory
        self._reload_interval = reload_interval_seconds
        self._keys: KeySet | None = None
        self._read: bytes | None = None  # the manifest as last read
        self._checked_at = float("-inf")
        # bumped at every reload, so that caches of verified tokens know to empty
        self.generation = 0

    # ---- reading (every process) ------------------------------------------------------------
    def current(self) -> KeySet:
        """The keys as the manifest last said, looking again at most once per interval."""
        if self._keys is not None and time.monotonic() - self._checked_at < self._reload_interval:
            return self._keys
        return self.refresh()

    def refresh(self) -> KeySet:
        """Look at the manifest now; reload if it changed. A manifest that cannot be read
        while keys are in hand is logged once and the keys in hand are kept until it
        changes again (writers replace it whole, so a bad one is not a passing state)."""
        self._checked_at = time.monotonic()
        try:
            data = (self.directory / MANIFEST).read_bytes()
        except FileNotFoundError:
            data = b""
        if self._keys is not None and data == self._read:
            return self._keys
        try:
            keys = self._load(data)
        except (OSError, ValueError) as exc:
            if self._keys is None:
                raise SigningKeysMissing(
                    f"The signing keys in {self.directory} cannot be read: {exc}"
                ) from exc
            self._read = data
            log.warning("signing_keys_reload_failed", directory=str(self.directory), error=str(exc))
            return self._keys
        self._keys, self._read = keys, data
        self.generation += 1
        return keys

    def signer(self) -> tuple[str, Ed25519PrivateKey]:
        """The active key and its kid; a ring without one cannot sign, which is refused."""
        keys = self.current()
        if keys.signer is None or keys.active_kid is None:
            raise SigningKeysMissing(
                f"No active signing key in {self.directory}: run `pantherahive keys add "
                "--activate` (or `pantherahive keys activate KID`)."
            )
        return keys.active_kid, keys.signer

    def manifest(self) -> Manifest | None:
        try:
            return Manifest.from_bytes((self.directory / MANIFEST).read_bytes())
        except FileNotFoundError:
            return None

    def _load(self, data: bytes) -> KeySet:
        if not data:
            raise FileNotFoundError(f"{self.directory / MANIFEST} does not exist or is empty")
        manifest = Manifest.from_bytes(data)
        moment = clock.now()
        signer: Ed25519PrivateKey | None = None
        public_keys: dict[str, Ed25519PublicKey] = {}
        for entry in manifest.keys:
            if not entry.verifies_at(moment):
                continue
            private = self._read_private_key(entry.kid)
            public_keys[entry.kid] = private.public_key()
            if entry.kid == manifest.active:
                signer = private
        return KeySet(
            active_kid=manifest.active,
            signer=signer,
            public_keys=public_keys,
            entries={entry.kid: entry for entry in manifest.keys},
        )

    def _read_private_key(self, kid: str) -> Ed25519PrivateKey:
        key = serialization.load_pem_private_key(
            (self.directory / f"{kid}.pem").read_bytes(), password=None
        )
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{kid}.pem is not an Ed25519 private key")
        return key

    # ---- writing (the CLI, a first start in development) ---------------------------------------
    def ensure_key(self) -> bool:
        """Create and activate a first key if the directory has none; True if it did. Every
        process racing on an empty directory ends up with the one key the first made."""
        with self._locked():
            manifest = self.manifest()
            if manifest is not None and manifest.keys:
                return False
            entry = self._new_key()
            self._write_manifest(Manifest(active=entry.kid, keys=(entry,)))
            return True

    def add(self, *, activate: bool = False) -> KeyEntry:
        with self._locked():
            manifest = self.manifest() or Manifest(active=None, keys=())
            entry = self._new_key()
            active = entry.kid if activate else manifest.active
            self._write_manifest(Manifest(active=active, keys=(*manifest.keys, entry)))
            return entry

    def activate(self, kid: str) -> str | None:
        """Make ``kid`` the signer; answer the key that signed until now."""
        with self._locked():
            manifest = self._existing_manifest()
            entry = self._entry(manifest, kid)
            if entry.retired_at is not None:
                raise SigningKeyError(
                    f"Key {kid} is retired and cannot sign again: add a new key instead."
                )
            if manifest.active != kid:
                self._write_manifest(replace(manifest, active=kid))
            return manifest.active

    def retire(self, kid: str, *, grace: timedelta) -> KeyEntry:
        """Stop publishing ``kid`` once ``grace`` has passed (at least the access-token
        lifetime, so the tokens it signed expire first). The signer cannot be retired."""
        with self._locked():
            manifest = self._existing_manifest()
            entry = self._entry(manifest, kid)
            if manifest.active == kid:
                raise SigningKeyError(
                    f"Key {kid} signs new tokens: activate another key before retiring it."
                )
            if entry.retired_at is not None:
                return entry
            moment = clock.now()
            retired = replace(entry, retired_at=moment, verify_until=moment + grace)
            keys = tuple(retired if key.kid == kid else key for key in manifest.keys)
            self._write_manifest(replace(manifest, keys=keys))
            return retired

    def prune(self) -> list[KeyEntry]:
        """Delete the retired keys whose ``verifyUntil`` has passed; answer them."""
        with self._locked():
            manifest = self._existing_manifest()
            moment = clock.now()
            gone = [key for key in manifest.keys if not key.verifies_at(moment)]
            if not gone:
                return []
            kept = tuple(key for key in manifest.keys if key.verifies_at(moment))
            self._write_manifest(replace(manifest, keys=kept))
            for key in gone:
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / f"{key.kid}.pem").unlink()
            return gone

    def _existing_manifest(self) -> Manifest:
        manifest = self.manifest()
        if manifest is None:
            raise SigningKeyError(
                f"{self.directory} holds no signing keys yet: run `pantherahive keys add "
                "--activate`."
            )
        return manifest

    @staticmethod
    def _entry(manifest: Manifest, kid: str) -> KeyEntry:
        entry = manifest.entry(kid)
        if entry is None:
            known = ", ".join(key.kid for key in manifest.keys) or "none"
            raise SigningKeyError(f"No key {kid!r} (keys: {known}).")
        return entry

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.directory / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _new_key(self) -> KeyEntry:
        moment = clock.now()
        kid = f"{moment:%Y%m%d}-{secrets.token_hex(4)}"
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._write_atomically(f"{kid}.pem", pem)
        return KeyEntry(kid=kid, created_at=moment)

    def _write_manifest(self, manifest: Manifest) -> None:
        self._write_atomically(MANIFEST, manifest.to_bytes())

    def _write_atomically(self, name: str, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:  # mkstemp: mode 0600
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.directory / name)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def key_ring(settings: Settings) -> KeyRing:
    """The ring the settings point at, ready to sign. Development creates a first key in
    an empty directory; production never does (every machine would sign with its own key
    and refuse the others' tokens)."""
    ring = KeyRing(settings.signing_keys_path)
    try:
        if settings.env == "development":
            ring.ensure_key()
        elif ring.manifest() is None:
            raise SigningKeysMissing(
                f"{ring.directory} holds no signing keys: create one with `pantherahive keys "
                "add --activate` and give every process of the fleet the same directory."
            )
        ring.signer()
    except (OSError, ValueError, SigningKeyError) as exc:
        raise SigningKeysMissing(f"PANTHERAHIVE_SIGNING_KEYS_DIR: {exc}") from exc
    return ring
