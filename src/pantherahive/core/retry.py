"""Exponential backoff with jitter: the one retry schedule of the platform.

Without jitter, N workers (or N webhook receivers' senders) that lost the same broker or
database at the same moment retry in lock-step and hit it together again. "Full jitter"
draws each wait uniformly from ``[0, cap]`` where the cap doubles per failure, which
spreads the retries out and keeps the expected wait at half the deterministic one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """``delay(n)``: the wait before the n-th retry (n ≥ 1).

    The cap is ``min(maximum, base * 2**(n-1))``; with ``jitter`` (default) the wait is
    drawn from ``[cap * (1 - jitter), cap]`` — ``jitter=1`` is full jitter, ``0`` none.
    """

    base: float = 0.5
    maximum: float = 30.0
    jitter: float = 1.0

    def cap(self, failures: int) -> float:
        exponent = max(failures - 1, 0)
        # 2**exponent overflows a float long after the cap is reached: stop doubling there.
        if exponent > 64:
            return float(self.maximum)
        return float(min(self.maximum, self.base * 2**exponent))

    def delay(self, failures: int) -> float:
        cap = self.cap(failures)
        if self.jitter <= 0 or cap <= 0:
            return cap
        return cap * (1.0 - self.jitter) + random.uniform(0.0, cap * self.jitter)  # noqa: S311


@dataclass(slots=True)
class BackoffState:
    """A running retry loop's place in a :class:`Backoff` schedule: ``failed()`` returns
    the next wait, ``succeeded()`` starts over."""

    policy: Backoff
    failures: int = field(default=0)

    def failed(self) -> float:
        self.failures += 1
        return self.policy.delay(self.failures)

    def succeeded(self) -> None:
        self.failures = 0
