"""Sealed secrets open only with the same key material, purpose and binding."""

from __future__ import annotations

import pytest

from pantherahive.infra.security.crypto import SecretBox, UndecryptableSecret

KEY = "k" * 48


def test_a_sealed_value_opens_where_it_was_sealed_and_nowhere_else() -> None:
    box = SecretBox(KEY, purpose="totp-secrets")
    sealed = box.seal(b"JBSWY3DPEHPK3PXP", bound_to=b"user-1")
    assert b"JBSWY3DPEHPK3PXP" not in sealed
    assert box.open(sealed, bound_to=b"user-1") == b"JBSWY3DPEHPK3PXP"
    assert box.seal(b"JBSWY3DPEHPK3PXP", bound_to=b"user-1") != sealed  # a fresh nonce
    for other_box, binding in (
        (box, b"user-2"),
        (SecretBox(KEY, purpose="other-purpose"), b"user-1"),
        (SecretBox("x" * 48, purpose="totp-secrets"), b"user-1"),
    ):
        with pytest.raises(UndecryptableSecret):
            other_box.open(sealed, bound_to=binding)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(UndecryptableSecret):
        box.open(tampered, bound_to=b"user-1")
