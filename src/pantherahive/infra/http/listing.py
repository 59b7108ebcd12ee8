"""The query parameters every list route declares the same way: the keyset cursor and the
page size (``cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from pantherahive.core.pagination import MAX_LIMIT

Cursor = Annotated[str | None, Query(max_length=512)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
