"""Secrets at rest: AES-256-GCM with keys derived from the platform secret.

A stored secret (an SSO client secret, say) is ``nonce || ciphertext+tag``. The
``context`` is authenticated but not stored: it binds a ciphertext to where it belongs
(``b"sso:<tenant id>"``), so a value copied into another tenant's row does not decrypt.
Keys come from :func:`derive_key`, one per purpose, so no two uses share a key.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE_BYTES = 12


class UndecryptableSecret(Exception):
    """The ciphertext was not made with this key and context (or was altered)."""


def derive_key(secret: str, purpose: bytes) -> bytes:
    """A 256-bit key for one purpose (``b"identity.sso"``) from the platform secret."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        secret.encode("utf-8")
    )


def encrypt(key: bytes, plaintext: bytes, *, context: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def decrypt(key: bytes, ciphertext: bytes, *, context: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(
            ciphertext[:_NONCE_BYTES], ciphertext[_NONCE_BYTES:], context
        )
    except (InvalidTag, ValueError) as exc:
        raise UndecryptableSecret("the secret cannot be decrypted with this key") from exc


class SecretBox:
    """:func:`encrypt` / :func:`decrypt` under one purpose's key, for a service that seals
    many values of one kind (TOTP secrets), each bound to its row."""

    def __init__(self, key_material: str, *, purpose: str) -> None:
        self._key = derive_key(key_material, purpose.encode("utf-8"))

    def seal(self, plain: bytes, *, bound_to: bytes) -> bytes:
        return encrypt(self._key, plain, context=bound_to)

    def open(self, sealed: bytes, *, bound_to: bytes) -> bytes:
        return decrypt(self._key, sealed, context=bound_to)
