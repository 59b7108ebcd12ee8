"""Ids in paths: the contract's camelCase names on the wire, and only UUIDs match.

A route declares its id segments as ``{taskId:uuid}``: the OpenAPI document then names the
parameter ``taskId`` (what users read in API.md and what generated clients expose), and a
segment that is not a UUID matches no route at all. That makes a malformed id a plain 404
(the contract's rule) and keeps literal siblings such as ``/v1/users/me`` from being taken
for an id: ``PATCH /v1/users/me`` is then a 405 listing what ``/v1/users/me`` supports,
not a 404 from a failed id parse.
"""

from __future__ import annotations

from typing import Any

from fastapi import Path


def uuid_path(name: str, description: str | None = None) -> Any:
    """The ``Path`` marker for ``Annotated[UUID, uuid_path("taskId")]``."""
    return Path(alias=name, description=description)
