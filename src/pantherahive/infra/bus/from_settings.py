"""The bus's tunables read from ``Settings``, in one place that the embedded runtime and the
broker factory both use (neither imports the other)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from pantherahive.infra.bus.delivery import RetryPolicy
from pantherahive.infra.bus.retention import Pruner
from pantherahive.infra.db.engine import Database
from pantherahive.settings import Settings


def is_embedded(bus_url: str | None) -> bool:
    """No broker: the API process reads the outbox itself."""
    return not bus_url or bus_url == "embedded"


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.bus_max_attempts,
        base_delay=settings.bus_retry_base_seconds,
        max_delay=settings.bus_retry_max_seconds,
    )


def pruner_from_settings(
    db: Database, settings: Settings, consumers: Sequence[str] | None
) -> Pruner:
    """``consumers``: those reading the outbox (embedded), or None with a broker, where a
    row may go once the relay published it."""
    return Pruner(
        db, keep=timedelta(days=settings.bus_retention_days),
        interval=settings.bus_prune_interval_seconds, consumers=consumers,
    )
