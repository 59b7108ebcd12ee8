"""The embedded consumer runtime: consumers read ``bus.outbox`` directly, in order, woken
by LISTEN/NOTIFY with a poll fallback; ``drain`` does the same synchronously for tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial
from typing import Unpack

from pantherahive.infra.bus.consumer import ConsumerSpec
from pantherahive.infra.bus.delivery import ConsumerRunner, RetryPolicy
from pantherahive.infra.bus.from_settings import pruner_from_settings, retry_policy
from pantherahive.infra.bus.host import ConsumerHost, HostOptions
from pantherahive.infra.bus.leadership import Leadership, Role
from pantherahive.infra.bus.waiting import wait_any
from pantherahive.infra.db.engine import Database
from pantherahive.infra.logging import get_logger
from pantherahive.settings import Settings

log = get_logger(__name__)
# Rows committed but not yet below the safe horizon are re-checked this often.
_HORIZON_RECHECK_SECONDS = 0.05
# The lag gauge of a running consumer is refreshed at most this often.
_LAG_GAUGE_SECONDS = 1.0


async def drain(
    db: Database,
    consumers: Sequence[ConsumerSpec],
    *,
    retry: RetryPolicy | None = None,
    max_wait: float = 10.0,
    batch_size: int = 500,
) -> int:
    """Handle every committed event the given consumers have not handled yet; return how
    many this call handled or parked. Waits (up to ``max_wait`` seconds) for committed rows
    that are not yet below the safe horizon because an older transaction is still open."""
    retry = retry or RetryPolicy(max_attempts=3, base_delay=0.0)
    runners = [ConsumerRunner(db, spec, retry) for spec in consumers]
    for runner in runners:
        await runner.ensure_offset()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait
    total = 0
    while True:
        progressed = waiting = False
        for runner in runners:
            while True:
                result = await runner.process_batch(batch_size)
                total += result.handled
                progressed = progressed or result.read > 0
                if result.read < batch_size:
                    break
            waiting = waiting or result.waiting
        if progressed:
            continue
        if not waiting or loop.time() >= deadline:
            for runner in runners:
                await runner.pending()  # the lag gauge
            return total
        await asyncio.sleep(_HORIZON_RECHECK_SECONDS)


class EmbeddedRuntime(ConsumerHost):
    """Runs each consumer whose advisory lock this process wins; retries the others, so a
    consumer moves to a surviving process when its runner dies."""

    default_batch_size = 200

    def __init__(
        self,
        db: Database,
        consumers: Sequence[ConsumerSpec],
        **options: Unpack[HostOptions],
    ) -> None:
        names = [spec.name for spec in consumers]
        if len(set(names)) != len(names):
            raise ValueError(f"consumer names must be unique: {names}")
        super().__init__(db, consumers, **options)
        self._stopping = asyncio.Event()
        self._wake = {name: asyncio.Event() for name in names}
        # Consumers waiting for committed events above the horizon: woken when a consumer
        # of this process commits (its transaction may have been the one holding it).
        self._held: set[str] = set()
        self._leadership = Leadership(
            db,
            [Role(spec.name, f"consumer:{spec.name}", partial(self._consume, spec))
             for spec in self.consumers],
            name="embedded", lease_retry=self.lease_retry, pruner=self.pruner,
            on_notify=self._notified, on_halt=self._wake_all,
        )
        self._control: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls, db: Database, settings: Settings, consumers: Sequence[ConsumerSpec]
    ) -> EmbeddedRuntime:
        return cls(
            db,
            consumers,
            retry=retry_policy(settings),
            batch_size=settings.bus_batch_size,
            poll_interval=settings.bus_poll_interval_seconds,
            # Outbox rows go once every consumer registered here has passed them.
            pruner=pruner_from_settings(db, settings, [spec.name for spec in consumers]),
        )

    @property
    def running(self) -> frozenset[str]:
        """Consumers this process runs right now."""
        return self._leadership.running

    async def start(self) -> None:
        if self._control is None and self.consumers:
            self._control = asyncio.create_task(
                self._leadership.run(self._stopping), name="bus-embedded-control"
            )

    async def stop(self, grace: float = 10.0) -> None:
        """Let every consumer finish the event in hand, then return."""
        self._stopping.set()
        self._wake_all()
        if self._control is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._control), grace)
        except TimeoutError:
            self._control.cancel()
            await asyncio.gather(self._control, return_exceptions=True)

    def _wake_all(self) -> None:
        for event in self._wake.values():
            event.set()

    def _notified(self, payload: str) -> None:
        """NOTIFY from the outbox trigger: wake the consumers that want one of the event
        types committed (all of them when the payload does not say)."""
        types = payload.split(",") if payload else None
        for spec in self.consumers:
            if types is None or any(spec.wants(kind) for kind in types):
                self._wake[spec.name].set()

    def _released(self) -> None:
        for name in self._held:
            self._wake[name].set()

    async def _consume(self, spec: ConsumerSpec, halt: asyncio.Event) -> None:
        runner = ConsumerRunner(self.db, spec, self.retry, halt, committed=self._released)
        loop = asyncio.get_running_loop()
        wake = self._wake[runner.name]
        await runner.ensure_offset()
        gauge_at = loop.time()
        while not runner.stopping.is_set():
            wake.clear()
            held = False
            try:
                result = await runner.process_batch(self.batch_size)
                if loop.time() >= gauge_at:
                    await runner.pending()
                    gauge_at = loop.time() + _LAG_GAUGE_SECONDS
                if result.read >= self.batch_size:
                    continue
                held = result.waiting
            except Exception as exc:
                log.warning("consumer batch failed", consumer=runner.name, error=repr(exc))
            if held:
                self._held.add(runner.name)
            try:
                await wait_any(_HORIZON_RECHECK_SECONDS if held else self.poll_interval, wake)
            finally:
                self._held.discard(runner.name)
            if runner.spec.linger > 0:
                await wait_any(runner.spec.linger, runner.stopping)
