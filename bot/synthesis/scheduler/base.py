"""The scheduler's state, in one place: what `failures.py` and `core.py` both work on.

`Scheduler` (core.py) is split in three only to keep each module readable: this base holds
every part (queue, rate window, learner, planner, breaker, counters) and the small helpers
both halves need; `SchedulerFailures` (failures.py) routes what went wrong; `Scheduler` adds
the public API and the dispatcher. See core.py for the whole story.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable

from bot.audio import Audio
from bot.errors import SegmindError
from bot.speech.request import SpeechRequest
from bot.synthesis.scheduler.breaker import Breaker
from bot.synthesis.scheduler.config import Clock, MonotonicClock, SchedulerConfig
from bot.synthesis.scheduler.cooldowns import Cooldowns
from bot.synthesis.scheduler.gate import Gate
from bot.synthesis.scheduler.learn import MAX_HOLD_WINDOWS, LimitLearner
from bot.synthesis.scheduler.plan import LatencyEstimate, Planner, concurrency_limit, plan
from bot.synthesis.scheduler.queue import FairQueue
from bot.synthesis.scheduler.share import SHARE_MEMORY_WINDOWS, Sharers
from bot.synthesis.scheduler.tally import QUEUE_WAIT_BUCKETS, Tally
from bot.synthesis.scheduler.ticket import Attempt, Ticket
from bot.synthesis.scheduler.window import RateWindow

__all__ = ["SchedulerBase", "Synthesize"]

log = logging.getLogger(__name__)

#: One attempt at speech, raising `SegmindError` subclasses (`SegmindClient.synthesize`).
Synthesize = Callable[[SpeechRequest], Awaitable[Audio]]


class SchedulerBase:
    """Every part of the scheduler and the helpers shared by its halves."""

    def __init__(
        self,
        synthesize: Synthesize,
        config: SchedulerConfig | None = None,
        *,
        clock: Clock | None = None,
        rng: Callable[[], float] = random.random,
        probe: Callable[[], Awaitable[bool]] | None = None,
        on_halt: Callable[[SegmindError], Awaitable[None]] | None = None,
        on_resume: Callable[[], Awaitable[None]] | None = None,
        on_attempt: Callable[[Attempt], None] | None = None,
        on_limit_learned: Callable[[int], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        gate: Gate | None = None,
    ) -> None:
        self._synthesize = synthesize
        self.config = config or SchedulerConfig()
        self._clock: Clock = clock or MonotonicClock()
        self._wall_clock = wall_clock
        self._rng = rng
        self._on_attempt = on_attempt
        self._on_limit_learned = on_limit_learned
        self._gate = gate
        #: The shared window could not be asked last time (logged once per outage).
        self._gate_down = False
        self._wants_slot = False  # the last step stopped only for want of a cluster slot
        #: The shared window, full, said to ask again no sooner than this (clock time).
        self._slot_at = -math.inf
        self._chores: set[asyncio.Task[None]] = set()  # telling the cluster, in the background
        #: Something could not be told to the cluster since the last thing that could (told once).
        self._unshared = False
        #: This process's latest change of the cluster's rate, on its way to Redis: until it
        #: lands, the rate Redis answers is the one it replaces.
        self._rate_news: asyncio.Task[None] | None = None
        #: How many processes shared the key lately: this one's share if Redis goes away.
        self._sharers = Sharers(SHARE_MEMORY_WINDOWS * self.config.window)

        self._queue = FairQueue()
        self._window = RateWindow(self.config, shared=gate is not None)
        self._learner = LimitLearner(self.config, alone=gate is None)
        self._latency = LatencyEstimate(self.config.initial_latency)
        self._running: dict[Ticket, asyncio.Task[None]] = {}
        self._planner = Planner(self._plan, self._running, self._latency)
        #: (expires_at, id, ticket) for every ticket not yet finished: expiry in O(log n).
        self._deadlines: list[tuple[float, int, Ticket]] = []
        self._cooldowns = Cooldowns()
        self._closed = False
        self._next_id = 0

        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed_event = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._breaker = Breaker(
            self._clock,
            self.config.halt_probe_interval,
            probe=probe,
            on_halt=on_halt,
            on_resume=on_resume,
            resumed=self._wake.set,
        )

        self._last_pause = -math.inf  # when the latest 429 was logged as a warning
        self._served = self._failed = self._rate_limited = 0
        self._retried = self._expired = self._cancelled = 0
        #: How long each request waited in the queue before its first attempt started.
        self.queue_waits = Tally(QUEUE_WAIT_BUCKETS)

    def _concurrency(self) -> int:
        """Calls allowed in flight now, from the rate in force and the latency estimate."""
        return concurrency_limit(
            rpm=self._window.rpm,
            span=self.config.span,
            latency=self._latency.seconds,
            cap=self.config.max_concurrency,
        )

    def _plan(self, now: float) -> list[tuple[Ticket, float]]:
        """Every queued ticket with its estimated start, in serve order (none while halted)."""
        if self._breaker.error is not None or self._closed:
            return []
        return plan(
            self._queue,
            self._window,
            now=now,
            running=self._running,
            latency=self._latency.seconds,
            limit=self._concurrency(),
        )

    def _fail(self, ticket: Ticket, error: BaseException) -> None:
        self._failed += 1
        self._queue.release(ticket)
        self._planner.changed()
        ticket.fail(error)

    def _tell_cluster(self, what: Awaitable[None], action: str) -> asyncio.Task[None]:
        """Send a 429 pause or a learned rate to the other processes without holding this
        one up; a failure to reach Redis is logged (their own 429s will teach them)."""

        async def send() -> None:
            try:
                await what
            except Exception as exc:
                # Told once until one is shared again: an outage strands every 429 after it.
                level = logging.DEBUG if self._unshared else logging.WARNING
                self._unshared = True
                log.log(level, "Could not share %s with the other processes: %s", action, exc)
            else:
                self._unshared = False

        task = asyncio.get_running_loop().create_task(send(), name=f"cluster-{action}")
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)
        return task

    def _share_rate(self, was: int, extra: float = 0.0) -> None:
        """Tell the cluster the rate this process learned: a decrease from `was`, or a probe
        upward from it. A rate learned alone (the shared window out of reach) stays here.

        The cluster's rate is kept in Redis for the longest hold, `extra` (a pause) past it:
        long enough for any process to probe upward from it, never for ever.
        """
        rpm = self._learner.rpm
        if self._gate is None or rpm == was or not self._learner.shared:
            return
        keep = MAX_HOLD_WINDOWS * self.config.window + extra
        news = self._gate.learned(rpm, keep) if rpm < was else self._gate.raised(was, rpm, keep)
        self._rate_news = self._tell_cluster(news, "the learned limit")

    def _go_alone(self, exc: BaseException) -> None:
        """The shared window cannot be reached: pace alone, at this process's share of the
        rate in force (see `share.py`), until it answers again. Told once per outage."""
        rpm = self._window.rpm
        now = self._clock.now()
        share, sharers = self._sharers.share(rpm, now)
        # Probing waits as long as the peers are remembered (see `LimitLearner.part`).
        self._learner.part(share, now, hold=self._sharers.memory)
        if sharers > 1:
            self._window.rpm = self._learner.rpm  # told below, with why
            self._planner.changed()
            pacing = f"at {share} of {rpm} calls per {self.config.window:g} s, its share of "
            pacing += f"{sharers} processes"
        else:
            pacing = f"at {rpm} calls per {self.config.window:g} s (no other process used "
            pacing += "the key lately)"
        log.warning(
            "The rate window shared with other processes cannot be reached (%s); pacing this "
            "process alone until it can, %s",
            str(exc) or type(exc).__name__,
            pacing,
        )

    def _follow_cluster(self, rpm: int, now: float, *, rejoined: bool) -> None:
        """The shared window paces the cluster at `rpm`: pace there too. Just back after an
        outage, what was learned alone is dropped for it (see `learn.py`)."""
        if rejoined:
            changed = self._learner.rejoin(rpm, now)
            why = "the shared rate window answers again (what was learned alone is dropped)"
        elif self._rate_news is not None and not self._rate_news.done():
            return  # Redis has not heard this process's own change yet
        else:
            changed = self._learner.follow(rpm, now)
            why = "the rate the processes sharing the key pace at"
        if changed:
            self._set_rate(self._learner.rpm, why)

    def _set_rate(self, rpm: int, why: str) -> None:
        """Pace at `rpm` calls per span from now on."""
        if rpm == self._window.rpm:
            return
        log.info(
            "Pacing at %d calls per %.0f s (was %d; SEGMIND_RPM says %d): %s",
            rpm,
            self.config.window,
            self._window.rpm,
            self.config.rpm,
            why,
        )
        self._window.rpm = rpm
        self._planner.changed()
