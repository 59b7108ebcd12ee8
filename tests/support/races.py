"""N processes let go at the same moment: how tests hunt first-start races (``serve
--workers N`` or N containers on one volume creating the same file at once)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any


def race(
    target: Callable[..., None], root: str, *, processes: int, preload: Sequence[str]
) -> tuple[list[tuple[str, Any]], list[int | None]]:
    """Run ``target(root, barrier, results)`` in ``processes`` fresh processes that wait
    on one barrier; return what each put on ``results`` (``("ok", value)`` or
    ``("error", repr)``) and the processes' exit codes.

    forkserver: a clean process (no inherited threads) that forks the racers cheaply,
    with ``preload`` imported once in it.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=target, args=(root, barrier, results)) for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    answers = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(60)
    return answers, [worker.exitcode for worker in workers]
