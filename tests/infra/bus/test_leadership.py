"""The one leadership loop of the bus (embedded runtime, broker worker, relay) against real
PostgreSQL advisory locks: one process per role, restarts, a crash taking it down, and
work finishing while the lock is still held."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from sqlalchemy import text

from pantherahive.infra.bus.control_connection import ControlConnection
from pantherahive.infra.bus.leadership import Leadership, Role
from pantherahive.infra.bus.retention import Pruned, Pruner
from pantherahive.infra.db.engine import Database

PATIENCE = 10.0


class Crash(BaseException):
    """Stands for the process going down: not an Exception, so nothing restarts it."""


async def wait_until(predicate: Callable[[], Awaitable[bool]]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while not await predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def lock_holders(owner: Database, key: str) -> int:
    async with owner.sessions() as session:
        count = await session.scalar(
            text(
                "SELECT count(*) FROM pg_locks, (SELECT hashtextextended(:key, 0) AS k) AS lock "
                "WHERE locktype = 'advisory' AND granted AND "
                "classid = ((lock.k >> 32) & 4294967295)::oid AND "
                "objid = (lock.k & 4294967295)::oid"
            ),
            {"key": f"pantherahive:{key}"},
        )
    return int(count or 0)


class RoundCounter(Pruner):
    """The pruner has its turn once per round, after the locks were tried: a test's way to
    know a round happened."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, keep=timedelta(days=1), interval=3600, consumers=None)
        self.rounds = 0

    async def tick(self, control: ControlConnection) -> Pruned | None:
        self.rounds += 1
        return None


async def test_one_process_runs_a_role_and_a_survivor_takes_it_over(
    app_db: Database, owner_db: Database
) -> None:
    lock = f"test-{uuid.uuid4().hex}"
    running: list[str] = []

    def role(process: str) -> Role:
        async def work(halt: asyncio.Event) -> None:
            running.append(process)
            await halt.wait()

        return Role("only", lock, work)

    first_stopping, second_stopping = asyncio.Event(), asyncio.Event()
    first = Leadership(app_db, [role("first")], name="first", lease_retry=0.05)
    rounds = RoundCounter(app_db)
    second = Leadership(app_db, [role("second")], name="second", lease_retry=0.05,
                        pruner=rounds)
    first_run = asyncio.create_task(first.run(first_stopping))

    async def first_leads() -> bool:
        return first.running == {"only"}

    await wait_until(first_leads)
    second_run = asyncio.create_task(second.run(second_stopping))

    async def second_tried_twice() -> bool:
        return rounds.rounds >= 2

    await wait_until(second_tried_twice)
    assert running == ["first"]
    assert second.running == frozenset()
    assert await lock_holders(owner_db, lock) == 1

    first_stopping.set()
    await first_run

    async def second_leads() -> bool:
        return second.running == {"only"}

    await wait_until(second_leads)
    assert running == ["first", "second"]
    second_stopping.set()
    await second_run
    assert await lock_holders(owner_db, lock) == 0


async def test_a_role_that_died_of_an_exception_is_restarted_under_the_lock_it_holds(
    app_db: Database, owner_db: Database
) -> None:
    lock = f"test-{uuid.uuid4().hex}"
    starts: list[int] = []

    async def work(halt: asyncio.Event) -> None:
        starts.append(1)
        if len(starts) == 1:
            raise RuntimeError("a bug in the consumer loop")
        await halt.wait()

    stopping = asyncio.Event()
    # A long lease: the restart comes from the task's end, not from the next round.
    leadership = Leadership(app_db, [Role("flaky", lock, work)], name="t", lease_retry=600)
    run = asyncio.create_task(leadership.run(stopping))

    async def restarted() -> bool:
        return len(starts) == 2 and leadership.running == {"flaky"}

    await wait_until(restarted)
    assert await lock_holders(owner_db, lock) == 1
    stopping.set()
    await run


async def test_a_role_that_died_of_a_base_exception_takes_the_leadership_with_it(
    app_db: Database, owner_db: Database
) -> None:
    crashing, steady = f"test-{uuid.uuid4().hex}", f"test-{uuid.uuid4().hex}"
    finished: list[str] = []

    async def crash(_halt: asyncio.Event) -> None:
        raise Crash

    async def keep_going(halt: asyncio.Event) -> None:
        try:
            await halt.wait()
        finally:
            finished.append("steady")

    leadership = Leadership(
        app_db, [Role("steady", steady, keep_going), Role("crash", crashing, crash)],
        name="t", lease_retry=600,
    )
    with pytest.raises(Crash):
        await leadership.run(asyncio.Event())
    # The other role was halted and finished; the connection, and so the locks, are gone.
    assert finished == ["steady"]
    assert await lock_holders(owner_db, steady) == 0


async def test_work_in_hand_finishes_while_the_lock_is_still_held(
    app_db: Database, owner_db: Database
) -> None:
    lock = f"test-{uuid.uuid4().hex}"
    started = asyncio.Event()
    held_at_the_end: list[int] = []
    halted: list[bool] = []

    async def work(halt: asyncio.Event) -> None:
        started.set()
        await halt.wait()
        # The event in hand: nobody else may take the role before it is done.
        held_at_the_end.append(await lock_holders(owner_db, lock))

    stopping = asyncio.Event()
    leadership = Leadership(app_db, [Role("careful", lock, work)], name="t", lease_retry=600,
                            on_halt=lambda: halted.append(True))
    run = asyncio.create_task(leadership.run(stopping))
    await asyncio.wait_for(started.wait(), PATIENCE)
    stopping.set()
    await run
    assert held_at_the_end == [1]
    assert halted == [True]
    assert await lock_holders(owner_db, lock) == 0
