"""The scheduler: every speech call in the bot goes through one paced, fair queue.

The API key allows 5 (free) or 50 (pro) calls a minute, each takes ~20 s and costs money, and
a whole server may ask at once. So the scheduler, not Segmind, decides when a call starts. It
admits requests (cooldowns and caps), and one dispatcher task starts every call that may start:
the fair queue (`queue.py`) says which ticket is next, the rate window (`window.py`) says when,
and at most `max_concurrency` run at once. Each outcome routes the ticket: done; back to the
front after a 429 (which pauses everyone) or a retryable failure (with back-off, while others
are served); failed; or, for an operator problem, the breaker (`breaker.py`) halts everything.
After every change the plan (`plan.py`) gives each queued ticket its place and ETA.

It knows nothing of Discord. Everything runs on one event loop; nothing here is thread-safe.
All time goes through a :class:`Clock`, so tests drive it deterministically.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.audio import Audio
from bot.errors import (
    CooldownError,
    QueueFullError,
    RateLimitedError,
    RequestExpiredError,
    SchedulerClosedError,
    SegmindError,
)
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest
from bot.synthesis.backoff import backoff_delay
from bot.synthesis.scheduler.aio import cancel_and_wait, first_of
from bot.synthesis.scheduler.breaker import Breaker, fresh
from bot.synthesis.scheduler.config import Clock, MonotonicClock, SchedulerConfig
from bot.synthesis.scheduler.cooldowns import Cooldowns
from bot.synthesis.scheduler.plan import LatencyEstimate, plan
from bot.synthesis.scheduler.queue import FairQueue
from bot.synthesis.scheduler.ticket import Attempt, Ticket
from bot.synthesis.scheduler.window import RateWindow

__all__ = ["Scheduler", "SchedulerStats", "Synthesize"]

log = logging.getLogger(__name__)

#: One attempt at speech, raising `SegmindError` subclasses (`SegmindClient.synthesize`).
Synthesize = Callable[[SpeechRequest], Awaitable[Audio]]


@dataclass(frozen=True, slots=True)
class SchedulerStats:
    """Counters since start; `failed` includes `expired` and tickets failed by close or halt."""

    served: int
    failed: int
    rate_limited: int
    retried: int
    queued: int
    running: int
    expired: int
    cancelled: int


class Scheduler:
    """Paces, orders and retries speech calls for everyone; see the module docstring."""

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
    ) -> None:
        self._synthesize = synthesize
        self.config = config or SchedulerConfig()
        self._clock: Clock = clock or MonotonicClock()
        self._rng = rng
        self._on_attempt = on_attempt

        self._queue = FairQueue()
        self._window = RateWindow(self.config)
        self._latency = LatencyEstimate(self.config.initial_latency)
        self._running: dict[Ticket, asyncio.Task[None]] = {}
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

        self._served = self._failed = self._rate_limited = 0
        self._retried = self._expired = self._cancelled = 0

    # -- public API ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the dispatcher on the running loop (tickets submitted before wait for it)."""
        if self._closed:
            raise SchedulerClosedError()
        if self._dispatcher is None:
            self._dispatcher = asyncio.get_running_loop().create_task(
                self._dispatch_loop(), name="speech-scheduler"
            )

    async def close(self, *, grace: float = 10.0) -> None:
        """Stop accepting, fail queued tickets, give running calls `grace` s, then cancel them."""
        if self._closed:
            await self._closed_event.wait()
            return
        self._closed = True
        self._wake.set()
        log.info(
            "Scheduler closing: %d queued, %d running", self._queue.count(), len(self._running)
        )
        try:
            for ticket in self._queue.serve_order():
                self._queue.drop(ticket)
                self._fail(ticket, SchedulerClosedError())
            await cancel_and_wait(self._breaker.task, self._dispatcher)
            if self._running and grace > 0:
                await first_of(self._idle.wait(), self._clock.sleep(grace))
            await cancel_and_wait(*self._running.values())
        finally:
            self._closed_event.set()

    def submit(
        self, request: SpeechRequest, requester: Requester, *, follow_up: bool = False
    ) -> Ticket:
        """Queue a request, or raise before queueing anything (closed, halted, cooldown, full).

        `follow_up` marks a later chunk of a message already accepted: it neither waits for
        nor restarts the member's cooldown, and is not refused by their own waiting cap (it
        still counts toward it and toward the global queue cap). A requester's cooldown of 0
        (narration: every message is read) skips the cooldown but keeps the waiting cap.
        """
        user_id = requester.user_id
        if self._closed:
            raise SchedulerClosedError()
        if self._breaker.error is not None:
            raise fresh(self._breaker.error)
        now = self._clock.now()
        length = self.config.user_cooldown if requester.cooldown is None else requester.cooldown
        cooled = follow_up or requester.cooldown == 0
        left = 0.0 if cooled else self.cooldown_remaining(user_id)
        if left > 0:
            raise CooldownError(left)
        limit = self.config.max_waiting_per_user
        if not follow_up and self._queue.active(user_id) >= limit:
            raise QueueFullError(per_user=True, limit=limit)
        if self._queue.count() >= self.config.max_queue:
            raise QueueFullError(per_user=False, limit=self.config.max_queue)

        self._next_id += 1
        ticket = Ticket(
            self._next_id,
            user_id,
            request,
            clock=self._clock,
            submitted_at=now,
            expires_at=now + self.config.job_timeout,
            withdraw=self._withdraw,
            guild_id=requester.guild_id,
        )
        self._queue.add(ticket)
        if length > 0 and not cooled:
            self._cooldowns.start(user_id, now, length)
        self._refresh(now)
        log.info("Ticket %d queued for user %d at position %s", ticket.id, user_id, ticket.position)
        self._wake.set()
        return ticket

    def cooldown_remaining(self, user_id: int) -> float:
        """Seconds until `user_id` may submit again (0 if they may now)."""
        return self._cooldowns.remaining(user_id, self._clock.now())

    @property
    def halted(self) -> SegmindError | None:
        """The operator problem that stopped all calls, until a probe says it is fixed."""
        return self._breaker.error

    @property
    def paused_until(self) -> float | None:
        """Clock time a 429 pause lasts until, while one is in force."""
        return self._window.paused_until(self._clock.now())

    @property
    def effective_rpm(self) -> int:
        """Calls allowed per span right now: lower for a while after a 429."""
        return self._window.effective_rpm(self._clock.now())

    @property
    def stats(self) -> SchedulerStats:
        return SchedulerStats(
            served=self._served,
            failed=self._failed,
            rate_limited=self._rate_limited,
            retried=self._retried,
            queued=self._queue.count(),
            running=len(self._running),
            expired=self._expired,
            cancelled=self._cancelled,
        )

    def queue_snapshot(self) -> list[Ticket]:
        """Queued tickets (waiting retries included) in the order they will be served."""
        return [ticket for ticket, _ in self._plan(self._clock.now())]

    # -- tickets leaving the queue ---------------------------------------------------------

    def _withdraw(self, ticket: Ticket) -> bool:
        """`Ticket.cancel`: take a still-queued ticket out and finish it as withdrawn."""
        if ticket.state != "queued" or not self._queue.drop(ticket):
            return False
        self._cancelled += 1
        self._queue.release(ticket)
        ticket.mark_withdrawn()
        log.info("Ticket %d withdrawn", ticket.id)
        self._refresh(self._clock.now())
        self._wake.set()
        return True

    def _fail(self, ticket: Ticket, error: BaseException) -> None:
        self._failed += 1
        self._queue.release(ticket)
        ticket.fail(error)

    def _expire(self, now: float) -> float | None:
        """Fail tickets queued past job_timeout; return the next expiry time, if any."""
        soonest: float | None = None
        for ticket in self._queue.serve_order():
            if ticket.expires_at <= now:
                self._queue.drop(ticket)
                self._expired += 1
                log.info("Ticket %d expired after %.0f s", ticket.id, now - ticket.submitted_at)
                self._fail(ticket, RequestExpiredError())
            elif soonest is None or ticket.expires_at < soonest:
                soonest = ticket.expires_at
        return soonest

    # -- places and ETAs -------------------------------------------------------------------

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
            limit=self.config.max_concurrency,
        )

    def _refresh(self, now: float) -> None:
        """Recompute every queued ticket's place and ETA and notify those that changed."""
        latency = self._latency.seconds
        for position, (ticket, start) in enumerate(self._plan(now), 1):
            ticket.update_plan(position, start + latency)
        for ticket in self._running:
            ticket.update_plan(None, max(now, ticket.started_at + latency))

    # -- the dispatcher --------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while not self._closed:
            self._wake.clear()
            try:
                until = self._step()
            except Exception:
                log.exception("The scheduler's dispatcher failed; retrying in 1 s")
                until = self._clock.now() + 1.0
            await self._wait(until)

    def _step(self) -> float | None:
        """Start every call that may start now; return when to look again (None: on a wake)."""
        now = self._clock.now()
        wakes: list[float] = []
        next_expiry = self._expire(now)
        if next_expiry is not None:
            wakes.append(next_expiry)
        if self._breaker.error is None and not self._closed:
            self._window.prune(now)
            while len(self._running) < self.config.max_concurrency and self._queue:
                start = self._window.rate_ready(self._window.earliest_start(now))
                if start > now:
                    wakes.append(start)
                    break
                ticket = self._queue.pick(now)
                if ticket is None:  # only retries are left, none due yet
                    wakes.append(self._queue.next_due())
                    break
                self._launch(ticket, now)
        self._refresh(now)
        return min(wakes) if wakes else None

    async def _wait(self, until: float | None) -> None:
        """Sleep until `until` (clock time) or until something wakes the dispatcher."""
        if self._wake.is_set():
            return
        if until is None:
            await first_of(self._wake.wait())
        else:
            await first_of(self._wake.wait(), self._clock.sleep(until - self._clock.now()))

    def _launch(self, ticket: Ticket, now: float) -> None:
        self._window.record_start(now)
        self._idle.clear()
        self._running[ticket] = asyncio.get_running_loop().create_task(
            self._run(ticket), name=f"speech-ticket-{ticket.id}"
        )
        ticket.mark_running(now, ready_at=now + self._latency.seconds)
        log.info(
            "Ticket %d (user %d) attempt %d started after %.1f s in queue",
            ticket.id,
            ticket.user_id,
            ticket.attempts,
            now - ticket.submitted_at,
        )

    async def _run(self, ticket: Ticket) -> None:
        started = self._clock.now()
        try:
            audio = await self._synthesize(ticket.request)
        except asyncio.CancelledError:
            self._running.pop(ticket, None)
            self._fail(ticket, SchedulerClosedError())
            raise
        except SegmindError as exc:
            self._running.pop(ticket, None)
            self._record(ticket, exc.status, started, 0.0)
            self._on_error(ticket, exc)
        except Exception as exc:
            self._running.pop(ticket, None)
            log.exception("Ticket %d: the speech call failed unexpectedly", ticket.id)
            self._fail(ticket, exc)
        else:
            self._running.pop(ticket, None)
            self._record(ticket, 200, started, audio.duration)
            took = self._clock.now() - started
            self._latency.observe(took)
            self._window.note_success()
            self._served += 1
            self._queue.release(ticket)
            ticket.finish(audio)
            log.info("Ticket %d done in %.1f s (attempt %d)", ticket.id, took, ticket.attempts)
        finally:
            if not self._running:
                self._idle.set()
            self._wake.set()

    def _record(self, ticket: Ticket, status: int | None, started: float, seconds: float) -> None:
        if self._on_attempt is None:
            return
        attempt = Attempt(
            user_id=ticket.user_id,
            guild_id=ticket.guild_id,
            status=status,
            elapsed=self._clock.now() - started,
            audio_seconds=seconds,
        )
        try:
            self._on_attempt(attempt)
        except Exception:
            log.exception("on_attempt failed")

    # -- failures --------------------------------------------------------------------------

    def _on_error(self, ticket: Ticket, exc: SegmindError) -> None:
        now = self._clock.now()
        exc.attempts = ticket.attempts
        if exc.operator_problem:
            self._fail(ticket, exc)
            self._halt(exc)
            return
        if self._closed:
            self._fail(ticket, SchedulerClosedError())
            return
        if self._breaker.error is not None:
            self._fail(ticket, fresh(self._breaker.error))
            return
        if isinstance(exc, RateLimitedError):
            self._rate_limited += 1
            self._pause_for_429(exc, now)
            self._requeue(ticket, None)
            return
        if exc.retryable:
            failures = ticket.count_failure()
            if failures < self.config.max_attempts:
                self._retried += 1
                delay = backoff_delay(
                    failures,
                    base=self.config.backoff_base,
                    cap=self.config.backoff_max,
                    rng=self._rng,
                )
                log.warning(
                    "Ticket %d: %s (attempt %d of %d); retrying in %.1f s",
                    ticket.id,
                    type(exc).__name__,
                    failures,
                    self.config.max_attempts,
                    delay,
                )
                self._requeue(ticket, now + delay)
                return
        log.warning(
            "Ticket %d failed: %s (status %s) after %d attempts",
            ticket.id,
            type(exc).__name__,
            exc.status,
            ticket.attempts,
        )
        self._fail(ticket, exc)

    def _requeue(self, ticket: Ticket, not_before: float | None) -> None:
        """Back to the front lane: a 429-hit ticket at once, a retry once it is due."""
        ticket.requeue(not_before)
        self._queue.push_front(ticket)

    def _pause_for_429(self, exc: RateLimitedError, now: float) -> None:
        """Pause every call until the reset (or a back-off) and run slower for a while."""
        jitter = self._rng() * self.config.margin
        wait = self._window.pause_for_429(now, exc.retry_after, jitter)
        log.warning(
            "Rate limited (429): pausing all calls for %.1f s, then %d calls per %.0f s for %.0f s",
            wait,
            self.config.penalty_rpm,
            self.config.window,
            self.config.penalty_seconds,
        )

    def _halt(self, exc: SegmindError) -> None:
        """Stop all calls on an operator problem: fail everything queued, tell the operator."""
        if self._breaker.error is not None or self._closed:
            return
        self._breaker.trip(exc)
        for ticket in self._queue.serve_order():
            self._queue.drop(ticket)
            self._fail(ticket, fresh(exc))
        self._wake.set()
