"""What every consumer runtime is given, embedded or on a broker: one declaration of the
options, so the runtimes and the brokers' workers pass them through instead of repeating
them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, NotRequired, TypedDict

from pantherahive.infra.bus.consumer import ConsumerSpec
from pantherahive.infra.bus.delivery import RetryPolicy
from pantherahive.infra.bus.retention import Pruner
from pantherahive.infra.db.engine import Database


class HostOptions(TypedDict):
    retry: RetryPolicy
    batch_size: NotRequired[int]
    poll_interval: NotRequired[float]
    lease_retry: NotRequired[float]
    pruner: NotRequired[Pruner | None]


class ConsumerHost:
    """Runs ``consumers`` against ``db``: ``retry`` for failed deliveries, at most
    ``batch_size`` events a read (default: the runtime's own), ``poll_interval`` seconds
    between reads when idle, ``lease_retry`` seconds between tries for a lock another
    process holds, and the ``pruner`` the leader runs."""

    default_batch_size: ClassVar[int]

    def __init__(
        self,
        db: Database,
        consumers: Sequence[ConsumerSpec],
        *,
        retry: RetryPolicy,
        batch_size: int | None = None,
        poll_interval: float = 1.0,
        lease_retry: float = 5.0,
        pruner: Pruner | None = None,
    ) -> None:
        self.db = db
        self.consumers = list(consumers)
        self.retry = retry
        self.batch_size = self.default_batch_size if batch_size is None else batch_size
        self.poll_interval = poll_interval
        self.lease_retry = lease_retry
        self.pruner = pruner
