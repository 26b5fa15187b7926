"""The rate window: when the next call may start without the API key's limit telling us off.

The key allows `rpm` calls per `window` seconds, enforced by the server with a sliding window.
Rather than spreading calls evenly (which makes the first member wait a whole interval), this
keeps a log of call starts and lets a call start whenever fewer than `rpm` started in the last
`span` (the window plus a safety margin for latency and clock skew): bursts up to the limit go
at once, so the first results come fast, and no window ever holds more than the limit.

`rpm` is the rate in force, which the scheduler sets from what it has learned of the key's
real limit (`learn.py`); it starts at the configured rpm. A 429 means the server disagrees:
every call pauses until the reset, however long (the members who cannot wait that long are
told at once, see `deadline.py`), or, when no reset was given, for window/configured rpm,
doubled for each fresh 429 in a row (a 429 for a call started after the pause began).

When a pause ends, what was queued is released at the rate in force, evenly: one call at the
pause's end, then one every span/rpm, until `rpm` calls have started since (from then on the
sliding window keeps them that far apart by itself). Firing the whole queue at once instead
(the sliding window alone would: everything in it has aged out by the reset) costs a burst of
refusals whenever the rate is still wrong (a mistyped SEGMIND_RPM not learned yet), and even
at the right rate it lands every call of the next windows on the same instant. Spread out, a
wrong rate is caught by the first call past the real limit, and the calls before it are the
limit's measure (`learn.py`). The ramp lapses after a span with no start since the pause (in
a cluster, after a span: this process's starts are only its share of the rate).

A start is logged when the dispatcher launches the call (so one step never launches more than
the limit) and stamped again when the call's task actually begins (`Stamp.at`): a burst of 50
launches runs its tasks one after another, and on a busy loop the last one goes out a few
hundred milliseconds after the first. The server counts arrivals, so the log must too, or the
next window's calls, paced from the launch, arrive while the server still counts the late ones.

Pure bookkeeping: no asyncio and no clock of its own; callers pass the time in.
"""

from __future__ import annotations

import contextlib
import math
from bisect import bisect_left
from collections import deque
from collections.abc import Sequence

from bot.synthesis.scheduler.config import SchedulerConfig

__all__ = ["RateWindow", "Stamp"]


class Stamp:
    """One logged start; `at` moves later once, when the call really begins.

    `slot` is the start's slot in the cluster's shared window (`gate.py`), if there is one.
    """

    __slots__ = ("at", "slot")

    def __init__(self, at: float, slot: str | None = None) -> None:
        self.at = at
        self.slot = slot


class RateWindow:
    """The log of recent call starts, the rate in force and the 429 pause."""

    def __init__(self, config: SchedulerConfig, *, shared: bool = False) -> None:
        self._config = config
        #: The starts logged here are this process's share of a window several processes
        #: share (`gate.py`): they may never reach the rate, so the even release after a pause
        #: lapses a span after it, when the shared window holds a span of evenly released
        #: starts and keeps them apart by itself. (Kept on, it would space this process's
        #: starts for good, and cost it its turn whenever two slots free close together.)
        self._shared = shared
        #: Calls allowed per span now: the configured rpm, or less once a 429 taught us so.
        self.rpm = config.rpm
        self._starts: deque[Stamp] = deque()  # call starts within the last span, oldest first
        self._paused_until: float | None = None
        self._paused_at = -math.inf  # when the latest pause was set
        #: The end of the latest pause, while its queue is still being released evenly.
        self._ramp_from: float | None = None
        self._consecutive_429 = 0  # fresh 429s without a reset time since the last success

    @property
    def starts(self) -> list[float]:
        """Call start times within the last span, oldest first (after `prune`), as a copy."""
        return [stamp.at for stamp in self._starts]

    def record_start(self, now: float, slot: str | None = None) -> Stamp:
        """A call is launched at `now`; restamp the result when it really begins."""
        stamp = Stamp(now, slot)
        self._starts.append(stamp)
        return stamp

    def forget(self, stamp: Stamp) -> None:
        """Give a refused call's slot back (the server did not count it; see `failures.py`).

        O(calls in the span).
        """
        with contextlib.suppress(ValueError):  # already pruned
            self._starts.remove(stamp)

    def prune(self, now: float) -> None:
        """Forget starts that no longer count at `now`."""
        span = self._config.span
        while self._starts and self._starts[0].at + span <= now:
            self._starts.popleft()
        ramp = self._ramp_from
        if ramp is not None and now >= ramp:
            since = self._since_ramp(None, ramp)
            if since >= self.rpm or ((since == 0 or self._shared) and now >= ramp + span):
                self._ramp_from = None  # released a whole rate's worth, or nobody came

    def rate_ready(self, earliest: float, starts: Sequence[float] | None = None) -> float:
        """The first time >= `earliest` a new call fits the sliding window after `starts`.

        `starts` defaults to the real log; planning passes its own, simulated, copy.
        A call at t needs fewer than R starts in (t - span, t], i.e. t >= starts[-R] + span;
        after a pause, until R calls started since its end, also t >= the latest + span / R.
        """
        n = len(self._starts) if starts is None else len(starts)
        ready = earliest
        if n >= self.rpm:
            oldest = self._starts[n - self.rpm].at if starts is None else starts[n - self.rpm]
            ready = max(ready, oldest + self._config.span)
        ramp = self._ramp_from
        if ramp is not None and 0 < self._since_ramp(starts, ramp) < self.rpm:
            latest = self._starts[-1].at if starts is None else starts[-1]
            ready = max(ready, latest + self._config.span / self.rpm)
        return ready

    def _since_ramp(self, starts: Sequence[float] | None, ramp: float) -> int:
        """Starts at or after `ramp` (the real log's, or `starts`, ascending), up to `rpm`."""
        if starts is not None:
            return min(self.rpm, len(starts) - bisect_left(starts, ramp))
        count = 0
        for stamp in reversed(self._starts):
            if stamp.at < ramp or count >= self.rpm:
                break
            count += 1
        return count

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

    def pause_for_429(
        self,
        now: float,
        retry_after: float | None,
        jitter: float,
        *,
        started_at: float | None = None,
    ) -> float:
        """Pause every call until the reset (or a back-off); return the pause in seconds.

        `retry_after` is honoured however long it is. Without one the pause is window/rpm,
        from the configured rpm (the learned rate already spaces the starts that follow),
        doubled for each fresh 429 in a row (capped); a stale one (its call, started at
        `started_at`, began before the latest pause) does not double it again, so the refusals
        of one burst are one back-off, not forty. `jitter` is added either way.
        """
        config = self._config
        fresh = started_at is None or started_at > self._paused_at
        if retry_after is not None:
            wait = retry_after + jitter
        else:
            if fresh or self._consecutive_429 == 0:
                self._consecutive_429 += 1
            first = config.window / config.rpm
            cap = max(config.span, config.backoff_max)
            wait = min(cap, first * 2.0 ** (self._consecutive_429 - 1)) + jitter
        until = now + wait
        if self._paused_until is None or until > self._paused_until:
            self._paused_until = until
            self._paused_at = now
            self._ramp_from = until
        return wait

    def pause_until(self, until: float) -> bool:
        """Another process's 429 paused the cluster until `until`; True if that pauses this
        process longer than it already was.

        Unlike `pause_for_429` this is no refusal of ours: the back-off is left alone. The
        queue is released evenly after it all the same.
        """
        if self._paused_until is None or until > self._paused_until:
            self._paused_until = until
            self._ramp_from = until
            return True
        return False

    def note_success(self) -> None:
        """A call succeeded: the next 429 without a reset time backs off from the start."""
        self._consecutive_429 = 0
