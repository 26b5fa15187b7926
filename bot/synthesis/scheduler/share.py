"""How many processes shared the API key lately: this process's share of it if Redis goes away.

While the shared window answers, every process is admitted against the one rate and nothing
here matters. When Redis stops answering, each process paces alone (`core.py`); at the whole
rate, N busy processes would together make N times the key's limit, and about half their
calls would come back 429 until each had learned a lower limit of its own. So each process
remembers how many processes held starts in the shared window lately (every answer of the
gate counts them, `Admission.sharers`) and, alone, paces at its share of the rate:
floor(rpm / sharers), at least 1. From there the learner probes upward as after any lowered
rate (`learn.py`), so a process whose peers are gone too regains the whole key in a few holds.

The memory fades: the count is the largest one heard within the last `SHARE_MEMORY_WINDOWS`
windows. That bridges the lulls between one process's bursts (a peer idle for a minute still
wants its share), while a process that has been alone for longer than that takes the whole
key again rather than keep halving it for peers that left long ago.

Pure bookkeeping: no asyncio and no clock of its own; callers pass the time in.
"""

from __future__ import annotations

from collections import deque

__all__ = ["SHARE_MEMORY_WINDOWS", "Sharers"]

#: A count of processes sharing the key is remembered for this many windows.
SHARE_MEMORY_WINDOWS = 5


class Sharers:
    """The most processes heard sharing the key within the last `memory` seconds."""

    def __init__(self, memory: float) -> None:
        self.memory = memory
        #: (when, count), counts strictly decreasing from the oldest: the first is the largest
        #: within the memory, each later one the largest after the ones before it lapse.
        self._heard: deque[tuple[float, int]] = deque()

    def heard(self, count: int, now: float) -> None:
        """The shared window held starts of `count` processes (this one included) at `now`."""
        while self._heard and self._heard[-1][1] <= count:
            self._heard.pop()
        self._heard.append((now, max(1, count)))

    def count(self, now: float) -> int:
        """Processes sharing the key lately (1: nobody else was heard within the memory)."""
        while self._heard and self._heard[0][0] < now - self.memory:
            self._heard.popleft()
        return self._heard[0][1] if self._heard else 1

    def share(self, rpm: int, now: float) -> tuple[int, int]:
        """This process's share of `rpm` calls per window, and how many it is shared among."""
        sharers = self.count(now)
        return max(1, rpm // sharers), sharers
