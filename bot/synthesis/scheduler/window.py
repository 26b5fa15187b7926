"""The rate window: when the next call may start without the API key's limit telling us off.

The key allows `rpm` calls per `window` seconds, enforced by the server with a sliding window.
Rather than spreading calls evenly (which makes the first member wait a whole interval), this
keeps a log of call starts and lets a call start whenever fewer than `rpm` started in the last
`span` (the window plus a safety margin for latency and clock skew): bursts up to the limit go
at once, so the first results come fast, and no window ever holds more than the limit.

A 429 means the server disagrees anyway (another client on the key, a smaller plan): every
call pauses until the reset, or a doubling back-off when no reset was given, and the rate drops
to `penalty_rpm` for `penalty_seconds` afterwards.

Pure bookkeeping: no asyncio and no clock of its own; callers pass the time in.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from bot.synthesis.scheduler.config import SchedulerConfig

__all__ = ["RateWindow"]


class RateWindow:
    """The log of recent call starts, the 429 pause and the reduced rate after it."""

    def __init__(self, config: SchedulerConfig) -> None:
        self._config = config
        self._starts: deque[float] = deque()  # call start times within the last span
        self._paused_until: float | None = None
        self._penalty_until: float | None = None
        self._consecutive_429 = 0  # 429s without a reset time since the last success

    @property
    def starts(self) -> Sequence[float]:
        """Call start times within the last span, oldest first (after `prune`)."""
        return self._starts

    def record_start(self, now: float) -> None:
        """A call starts at `now`."""
        self._starts.append(now)

    def prune(self, now: float) -> None:
        """Forget starts that no longer count at `now`."""
        span = self._config.span
        while self._starts and self._starts[0] + span <= now:
            self._starts.popleft()

    def rate_ready(self, earliest: float, starts: Sequence[float] | None = None) -> float:
        """The first time >= `earliest` a new call fits the sliding window after `starts`.

        `starts` defaults to the real log; planning passes its own, simulated, copy.
        A call at t needs fewer than R starts in (t - span, t], i.e. t >= starts[-R] + span,
        with R the penalty rate before the penalty ends and the full rate after.
        """
        if starts is None:
            starts = self._starts
        span = self._config.span
        n = len(starts)

        def bound(rate: int) -> float:
            return starts[n - rate] + span if n >= rate else -math.inf

        full = max(earliest, bound(self._config.rpm))
        penalty_end = self._penalty_until
        if penalty_end is None or earliest >= penalty_end:
            return full
        reduced = max(earliest, bound(self._config.penalty_rpm))
        return reduced if reduced < penalty_end else max(full, penalty_end)

    def earliest_start(self, now: float) -> float:
        """`now`, or the end of the 429 pause while one is in force."""
        if self._paused_until is not None and self._paused_until > now:
            return self._paused_until
        return now

    def paused_until(self, now: float) -> float | None:
        """Clock time the 429 pause lasts until, if one is in force at `now`."""
        if self._paused_until is None or self._paused_until <= now:
            return None
        return self._paused_until

    def effective_rpm(self, now: float) -> int:
        """Calls allowed per span at `now`: lower for a while after a 429."""
        if self._penalty_until is not None and now < self._penalty_until:
            return self._config.penalty_rpm
        return self._config.rpm

    def pause_for_429(self, now: float, retry_after: float | None, jitter: float) -> float:
        """Pause every call until the reset (or a back-off) and run slower for a while.

        Returns the pause in seconds: `retry_after` when the server gave one, else
        window/rpm doubled for each 429 in a row (capped); `jitter` is added either way.
        """
        config = self._config
        if retry_after is not None:
            wait = retry_after + jitter
        else:
            self._consecutive_429 += 1
            first = config.window / config.rpm
            cap = max(config.span, config.backoff_max)
            wait = min(cap, first * 2.0 ** (self._consecutive_429 - 1)) + jitter
        until = now + wait
        if self._paused_until is None or until > self._paused_until:
            self._paused_until = until
        self._penalty_until = max(self._penalty_until or now, now + config.penalty_seconds)
        return wait

    def note_success(self) -> None:
        """A call succeeded: the next 429 without a reset time backs off from the start."""
        self._consecutive_429 = 0
