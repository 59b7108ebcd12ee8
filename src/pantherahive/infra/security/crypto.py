"""Secrets the platform must read back (not merely compare), sealed at rest.

AES-256-GCM keyed from the platform's key material (the JWT secret, as the idempotency
store and the webhook secrets use it) with a purpose label, so a key derived for one use
opens nothing sealed for another. The row's id is bound as associated data: a sealed value
copied into another row does not open there.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12


class SealFailed(ValueError):
    """The sealed value was not made with this key and binding (or was altered)."""


class SecretBox:
    def __init__(self, key_material: str, *, purpose: str) -> None:
        self._aead = AESGCM(
            hashlib.sha256(f"pantherahive-{purpose}\0".encode() + key_material.encode()).digest()
        )

    def seal(self, plain: bytes, *, bound_to: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plain, bound_to)

    def open(self, sealed: bytes, *, bound_to: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], bound_to)
        except InvalidTag as exc:
            raise SealFailed("the sealed value does not open with this key") from exc
