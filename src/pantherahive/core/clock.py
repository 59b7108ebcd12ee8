"""The platform's one clock.

Every timestamp the services write comes from :func:`now`, so a test can move time for all
of them at once (``clock.frozen``) instead of patching six copies of ``datetime.now``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

_source: list[Callable[[], datetime]] = []


def now() -> datetime:
    """The current moment, timezone-aware in UTC."""
    if _source:
        return _source[-1]()
    return datetime.now(UTC)


@contextmanager
def frozen(source: Callable[[], datetime]) -> Iterator[None]:
    """Let ``source`` answer :func:`now` inside the block (tests with a controlled clock)."""
    _source.append(source)
    try:
        yield
    finally:
        _source.remove(source)
