"""A histogram kept by the code that sees each event, with no metrics library.

The scheduler knows nothing of Prometheus (`bot.metrics` reads its state at scrape time), but
a distribution cannot be read back from a state: how long each request waited is known only
when it starts. So the scheduler counts each wait into fixed buckets here, and the metrics
turn the counts into a histogram at each scrape. Constant memory and O(log buckets) a value.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

__all__ = ["QUEUE_WAIT_BUCKETS", "Tally"]

#: Seconds a request waits in the queue before its call starts: none at all while the key
#: has room, minutes behind a burst on a free key, at most the request's 14-minute deadline.
QUEUE_WAIT_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 840.0)


class Tally:
    """Counts of values at or under each bound (Prometheus' `le`), their sum and count."""

    __slots__ = ("_counts", "bounds", "count", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not all(math.isfinite(b) for b in bounds):
            raise ValueError("bounds must be finite, distinct and increasing")
        self.bounds = tuple(bounds)
        #: One count per bound, and one past the last (+Inf); not cumulative.
        self._counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(bound, values at or under it) for each bound, then (inf, every value)."""
        running, out = 0, []
        for bound, count in zip((*self.bounds, math.inf), self._counts, strict=True):
            running += count
            out.append((bound, running))
        return out
