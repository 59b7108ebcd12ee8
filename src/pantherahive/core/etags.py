"""Entity tags and ``If-Match`` for versioned resources (RFC 9110 §8.8.3, §13.1.2).

A resource's ETag is its version as a strong tag, ``"3"``. Projects and tasks use this one
module, so both answer a conditional write the same way.
"""

from __future__ import annotations

import re

from pantherahive.core.errors import FieldError, PreconditionFailed, ValidationFailed

# Longer is refused (422) rather than parsed: a client has one version to name.
MAX_IF_MATCH_LENGTH = 512
_ENTITY_TAG = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')


def etag(version: int) -> str:
    return f'"{version}"'


def check_if_match(if_match: str | None, version: int, *, resource: str) -> None:
    """Let a write proceed only if ``If-Match`` holds for the current ``version``.

    Absent or ``*``: holds. Otherwise a comma-separated list of entity tags, one of which
    must equal the current ETag under the *strong* comparison RFC 9110 requires for
    ``If-Match``: a weak tag (``W/"3"``) never matches, and neither does a malformed
    field. A mismatch is 412 carrying the current ``ETag``, so the client can tell how
    stale it is; a field over ``MAX_IF_MATCH_LENGTH`` characters is 422.

    Call it on the row locked for the write, or two writers holding the same version can
    both pass.
    """
    if if_match is None:
        return
    if len(if_match) > MAX_IF_MATCH_LENGTH:
        raise ValidationFailed(
            f"If-Match may be at most {MAX_IF_MATCH_LENGTH} characters.",
            errors=[FieldError("If-Match", f"longer than {MAX_IF_MATCH_LENGTH} characters")],
        )
    field = if_match.strip(" \t")
    if field == "*":
        return
    current = etag(version)
    if current[1:-1] not in _strong_tags(field):
        raise PreconditionFailed(
            f"The {resource} is at version {version} (ETag {current}); If-Match did not "
            "match. Fetch it again and retry.",
            headers={"ETag": current},
        )


def _strong_tags(field: str) -> set[str]:
    """The opaque values of the strong tags in an ``#entity-tag`` list; empty when the
    field does not parse (then nothing matches)."""
    tags: set[str] = set()
    pos, end = 0, len(field)
    while pos < end:
        if field[pos] in ", \t":  # list separators and the empty elements RFC 9110 allows
            pos += 1
            continue
        match = _ENTITY_TAG.match(field, pos)
        if match is None:
            return set()
        if match.group(1) is None:
            tags.add(match.group(2))
        pos = match.end()
        while pos < end and field[pos] in " \t":
            pos += 1
        if pos < end and field[pos] != ",":
            return set()
    return tags
