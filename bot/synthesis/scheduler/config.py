"""What the scheduler is told: its limits (`SchedulerConfig`) and where time comes from (`Clock`).

Every knob lives in one frozen value so a misconfiguration fails at start-up, not on the first
429; every moment is read from a `Clock` so tests drive time by hand instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.config import Settings

__all__ = ["AUTO_MARGIN_FRACTION", "MAX_AUTO_MARGIN", "Clock", "MonotonicClock", "SchedulerConfig"]

#: The auto safety margin: this fraction of the window, at most MAX_AUTO_MARGIN seconds.
AUTO_MARGIN_FRACTION = 0.01
MAX_AUTO_MARGIN = 0.5


class Clock(Protocol):
    """Where the scheduler gets time from; tests pass one that moves only when told."""

    def now(self) -> float:
        """Monotonic seconds."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """Real time: `time.monotonic` (the event loop's own clock) and `asyncio.sleep`."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """How fast, how fair and how patient the scheduler is; see `.env.example` for the why."""

    rpm: int = 5
    window: float = 60.0
    #: Seconds added to the window so latency and clock skew never trip the server's limiter.
    #: None: min(0.5 s, 1 % of the window), so short test/bench windows keep ~99 % of the rate.
    safety_margin: float | None = None
    #: An upper safety cap on calls in flight. The limit in force is derived from the rate and
    #: the observed latency (`plan.concurrency_limit`), so this only binds if calls get slow.
    max_concurrency: int = 100
    user_cooldown: float = 5.0
    max_waiting_per_user: int = 3
    max_queue: int = 200
    #: Failed attempts (5xx, timeouts, drops; 429s are not counted) after which a request
    #: fails. 0: no count; retry until the request's own deadline (`job_timeout` after it
    #: was submitted), since Segmind bills only successful calls.
    max_attempts: int = 0
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    job_timeout: float = 14 * 60
    #: After a 429 that says nothing of the key's limit, the rate is multiplied by this.
    penalty_factor: float = 0.8
    #: Seconds at a lowered rate before it may rise again (None: two windows); see `learn.py`.
    penalty_duration: float | None = None
    halt_probe_interval: float = 300.0
    initial_latency: float = 20.0

    def __post_init__(self) -> None:
        problems = []
        if self.rpm < 1:
            problems.append("rpm must be at least 1")
        if not self.window > 0:
            problems.append("window must be positive")
        if self.safety_margin is not None and not self.safety_margin >= 0:
            problems.append("safety_margin must be non-negative")
        if self.max_concurrency < 1:
            problems.append("max_concurrency must be at least 1")
        if self.max_waiting_per_user < 1 or self.max_queue < 1:
            problems.append("max_waiting_per_user and max_queue must be at least 1")
        if self.max_attempts < 0:
            problems.append("max_attempts must be 0 (until the deadline) or more")
        if not 0 < self.penalty_factor <= 1:
            problems.append("penalty_factor must be in (0, 1]")
        if not (self.job_timeout > 0 and self.halt_probe_interval > 0):
            problems.append("job_timeout and halt_probe_interval must be positive")
        if self.user_cooldown < 0 or self.initial_latency < 0:
            problems.append("user_cooldown and initial_latency must be non-negative")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def margin(self) -> float:
        """The safety margin in effect (the auto value when `safety_margin` is None)."""
        if self.safety_margin is not None:
            return self.safety_margin
        return min(MAX_AUTO_MARGIN, AUTO_MARGIN_FRACTION * self.window)

    @property
    def span(self) -> float:
        """The sliding window the limiter enforces: `window` plus the margin."""
        return self.window + self.margin

    @property
    def penalty_seconds(self) -> float:
        return 2 * self.window if self.penalty_duration is None else self.penalty_duration

    @classmethod
    def from_settings(cls, settings: Settings) -> SchedulerConfig:
        return cls(
            rpm=settings.segmind_rpm,
            window=settings.segmind_rate_window,
            max_attempts=settings.max_attempts,
            backoff_base=settings.backoff_base,
            backoff_max=settings.backoff_max,
            user_cooldown=settings.user_cooldown,
            max_waiting_per_user=settings.max_waiting_per_user,
            max_queue=settings.max_queue,
            max_concurrency=settings.max_concurrency,
        )
