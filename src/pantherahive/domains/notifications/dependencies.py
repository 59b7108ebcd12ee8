"""What every notifications route takes: the request's session and a page size."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.pagination import MAX_LIMIT
from pantherahive.infra.http.unit_of_work import request_session

Session = Annotated[AsyncSession, Depends(request_session)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
