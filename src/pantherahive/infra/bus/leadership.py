"""Which process does what: the one leadership loop of the bus.

The embedded runtime (a consumer per outbox reader), the broker worker (a consumer per
durable subscription) and the relay all need the same thing: work that only one process
may do at a time, decided by session-level advisory locks on a dedicated control
connection. Those locks vanish with the connection, so a dead process's work moves to a
survivor — and a process whose connection died must stop its work, since another process
may take it now.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from pantherahive.core.retry import Backoff, BackoffState
from pantherahive.infra.bus.control_connection import ControlConnection
from pantherahive.infra.bus.retention import Pruner
from pantherahive.infra.bus.waiting import wait_any
from pantherahive.infra.db.engine import Database
from pantherahive.infra.logging import get_logger

log = get_logger(__name__)
# Reconnecting after the control connection failed: jittered, so processes that lost the
# database together do not come back together.
RECONNECT = Backoff(base=0.5, maximum=30.0)
# Restarting a role whose task died: soon, but a role that dies as it starts (the database
# refusing it) must not be restarted in a tight loop.
RESTART = Backoff(base=0.5, maximum=30.0)


def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Role:
    """Work only one process may do at a time. ``lock`` names its advisory lock; ``work``
    runs until the event it is handed is set, then returns once the work in hand is done."""

    name: str
    lock: str
    work: Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class Leadership:
    """Runs each role whose lock this process wins, until ``stopping`` is set.

    One round, every ``lease_retry`` seconds: take the locks of the roles not running here
    (one after the other: one connection runs one query at a time), let the pruner have its
    turn, wait, ping. A role whose task died of an ``Exception`` is restarted under the
    lock it still holds, after a jittered backoff (reset once it ran a whole lease); one
    that died of anything else (the process going down) takes the leadership with it.
    When the connection is lost, every role is halted — each finishes the work in hand
    while the locks are still held — and the loop connects again after a jittered backoff.
    """

    def __init__(
        self,
        db: Database,
        roles: Sequence[Role],
        *,
        name: str,
        lease_retry: float = 5.0,
        pruner: Pruner | None = None,
        on_notify: Callable[[str], None] | None = None,
        on_halt: Callable[[], None] = _nothing,
        reconnect: Backoff = RECONNECT,
    ) -> None:
        names = [role.name for role in roles]
        if len(set(names)) != len(names):
            raise ValueError(f"role names must be unique: {names}")
        self.db = db
        self.roles = list(roles)
        self.name = name
        self.lease_retry = lease_retry
        self.pruner = pruner
        self.on_notify = on_notify
        # Called when the roles are told to halt: a role asleep on its own wake-up event
        # (not the halt event) needs a nudge to notice.
        self.on_halt = on_halt
        self.reconnect = reconnect
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._started_at: dict[str, float] = {}
        self._restarts: dict[str, BackoffState] = {}
        self._restart_at: dict[str, float] = {}

    @property
    def running(self) -> frozenset[str]:
        """The roles this process runs right now."""
        return frozenset(name for name, task in self._tasks.items() if not task.done())

    async def run(self, stopping: asyncio.Event) -> None:
        backoff = BackoffState(self.reconnect)
        while not stopping.is_set():
            try:
                async with ControlConnection(self.db, self.on_notify) as control:
                    backoff.succeeded()
                    await self._lead(control, stopping)
            except Exception as exc:
                log.warning("lost the control connection; its work stopped",
                            leader=self.name, error=repr(exc))
            if not stopping.is_set():
                await wait_any(backoff.failed(), stopping)

    async def _lead(self, control: ControlConnection, stopping: asyncio.Event) -> None:
        halt = asyncio.Event()
        held: set[str] = set()
        try:
            while not stopping.is_set() and control.alive():
                await self._start_roles(control, halt, held)
                if self.pruner is not None:
                    await self.pruner.tick(control)
                await self._wait(stopping, control.lost)
                await control.ping()
        finally:
            # The roles finish the work in hand while this process still holds the locks;
            # only then does closing the connection release them.
            halt.set()
            self.on_halt()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            self._tasks.clear()

    async def _start_roles(
        self, control: ControlConnection, halt: asyncio.Event, held: set[str]
    ) -> None:
        loop = asyncio.get_running_loop()
        for role in self.roles:
            if role.name in self._tasks or self._restart_at.get(role.name, 0.0) > loop.time():
                continue
            if role.lock not in held:
                if not await control.try_lock(role.lock):
                    continue
                held.add(role.lock)
            self._restart_at.pop(role.name, None)
            self._started_at[role.name] = loop.time()
            self._tasks[role.name] = asyncio.create_task(
                role.work(halt), name=f"bus-{self.name}-{role.name}"
            )

    async def _wait(self, stopping: asyncio.Event, lost: asyncio.Event) -> None:
        """``lease_retry`` seconds, or less: if stopping, if the connection was lost, if a
        role's task ended (its BaseException is raised here), or when a role is due for its
        restart."""
        loop = asyncio.get_running_loop()
        timeout = min([self.lease_retry, *(at - loop.time() for at in self._restart_at.values())])
        waiters = [asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(lost.wait())]
        try:
            await asyncio.wait([*waiters, *self._tasks.values()], timeout=max(timeout, 0.0),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        for name, task in list(self._tasks.items()):
            if not task.done():
                continue
            del self._tasks[name]
            error = None if task.cancelled() else task.exception()
            if error is not None and not isinstance(error, Exception):
                raise error
            restarts = self._restarts.setdefault(name, BackoffState(RESTART))
            if loop.time() - self._started_at[name] >= self.lease_retry:
                restarts.succeeded()
            delay = restarts.failed()
            self._restart_at[name] = loop.time() + delay
            log.error("bus work died; restarting it", leader=self.name, role=name,
                      error=repr(error), restart_in=round(delay, 3))
