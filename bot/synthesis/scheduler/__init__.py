"""The request scheduler: every speech call in the bot goes through one paced, fair queue.

The API key allows 5 (free) or 50 (pro) calls a minute, each takes ~20 s and costs money, and
a whole server may ask at once. So the scheduler, not Segmind, decides when a call starts:

* a sliding-window log of call starts keeps every attempt under the key's limit (bursts up to
  the limit are allowed, so the first results come fast);
* members are served round-robin, so one member's queue cannot starve the others;
* a 429 pauses everything until the reset and lowers the rate for a while; the request that
  was hit is served first afterwards, never dropped;
* 5xx, timeouts and dropped connections are retried with back-off while others are served;
* an operator problem (bad key, no credits, wrong model) halts all calls at once instead of
  failing each member's request in turn and spending nothing useful;
* every queued ticket knows its place and an ETA, updated as the queue moves.

It knows nothing of Discord. Everything runs on one event loop; nothing here is thread-safe.
All time goes through a :class:`Clock`, so tests drive it deterministically.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

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

if TYPE_CHECKING:
    from bot.config import Settings

__all__ = [
    "Clock",
    "MonotonicClock",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerStats",
    "Synthesize",
    "Ticket",
    "TicketState",
]

log = logging.getLogger(__name__)

#: One attempt at speech, raising `SegmindError` subclasses (`SegmindClient.synthesize`).
Synthesize = Callable[[SpeechRequest], Awaitable[Audio]]
TicketState = Literal["queued", "running", "done", "failed"]

#: Listeners hear of an ETA change only when the estimated finish moved by at least this much,
#: so a small latency update does not turn into one Discord message edit per queued member.
ETA_NOTIFY_STEP = 1.0
#: Weight of the newest observed call duration in the latency estimate.
LATENCY_EWMA_ALPHA = 0.3
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
    max_concurrency: int = 20
    user_cooldown: float = 5.0
    max_waiting_per_user: int = 3
    max_queue: int = 200
    max_attempts: int = 4
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    job_timeout: float = 14 * 60
    penalty_factor: float = 0.8
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
        if self.max_attempts < 1:
            problems.append("max_attempts must be at least 1")
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
    def penalty_rpm(self) -> int:
        return max(1, math.floor(self.rpm * self.penalty_factor))

    @property
    def penalty_seconds(self) -> float:
        return 2 * self.window if self.penalty_duration is None else self.penalty_duration

    @classmethod
    def from_settings(cls, settings: Settings) -> SchedulerConfig:
        return cls(
            rpm=settings.segmind_rpm,
            max_attempts=settings.max_attempts,
            backoff_base=settings.backoff_base,
            backoff_max=settings.backoff_max,
            user_cooldown=settings.user_cooldown,
            max_waiting_per_user=settings.max_waiting_per_user,
            max_queue=settings.max_queue,
            max_concurrency=settings.max_concurrency,
        )


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


@dataclass(frozen=True, slots=True)
class Attempt:
    """One API call made for a ticket, for usage accounting: every attempt may cost money."""

    user_id: int
    guild_id: int | None
    #: 200 for audio; the HTTP status of a failure; None when no answer came (timeout, drop).
    status: int | None
    elapsed: float
    audio_seconds: float


class Ticket:
    """One accepted request, as the member's command sees it: state, place, ETA, result.

    Created only by :meth:`Scheduler.submit`. Its repr never shows the request text.
    """

    __slots__ = (
        "_cancelled",
        "_clock",
        "_done",
        "_error",
        "_expires_at",
        "_failures",
        "_listeners",
        "_not_before",
        "_notified_ready_at",
        "_position",
        "_ready_at",
        "_result",
        "_scheduler",
        "_started_at",
        "_state",
        "attempts",
        "guild_id",
        "id",
        "request",
        "submitted_at",
        "user_id",
    )

    def __init__(
        self,
        scheduler: Scheduler,
        ticket_id: int,
        user_id: int,
        request: SpeechRequest,
        *,
        clock: Clock,
        submitted_at: float,
        expires_at: float,
        guild_id: int | None = None,
    ) -> None:
        self.id = ticket_id
        self.user_id = user_id
        self.guild_id = guild_id
        self.request = request
        self.submitted_at = submitted_at
        #: HTTP attempts made so far, 429s included.
        self.attempts = 0
        self._scheduler = scheduler
        self._clock = clock
        self._expires_at = expires_at
        self._state: TicketState = "queued"
        self._position: int | None = None
        self._ready_at: float | None = None
        self._notified_ready_at: float | None = None
        self._not_before: float | None = None  # set while waiting to retry after a failure
        self._failures = 0  # retryable non-429 failures, bounded by max_attempts
        self._started_at = 0.0
        self._listeners: list[Callable[[Ticket], None]] = []
        self._done = asyncio.Event()
        self._result: Audio | None = None
        self._error: BaseException | None = None
        self._cancelled = False

    def __repr__(self) -> str:
        return f"<Ticket {self.id} user={self.user_id} {self._state} pos={self._position}>"

    @property
    def state(self) -> TicketState:
        return self._state

    @property
    def position(self) -> int | None:
        """1-based place among queued tickets in serve order; None unless queued."""
        return self._position

    @property
    def eta(self) -> float | None:
        """Estimated seconds until the audio is ready; None once finished."""
        if self._ready_at is None:
            return None
        return max(0.0, self._ready_at - self._clock.now())

    @property
    def cancelled(self) -> bool:
        """Withdrawn by :meth:`cancel` (its state is then "failed")."""
        return self._cancelled

    def add_listener(self, callback: Callable[[Ticket], None]) -> None:
        """Call `callback(ticket)` on every change of state, position or ETA."""
        self._listeners.append(callback)

    async def result(self) -> Audio:
        """The audio, or raise the final error. Cancelling the awaiting task leaves the ticket
        untouched; a withdrawn ticket raises `asyncio.CancelledError`."""
        await self._done.wait()
        if self._cancelled:
            raise asyncio.CancelledError
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def cancel(self) -> bool:
        """Withdraw the ticket if it is still queued (a running call is already paid for)."""
        return self._scheduler._withdraw(self)

    # -- scheduler side ------------------------------------------------------------------

    def _update(
        self,
        *,
        state: TicketState | None = None,
        position: int | None = None,
        ready_at: float | None = None,
    ) -> None:
        """Set state/place/estimate and tell listeners if anything they show has changed."""
        changed = False
        if state is not None and state != self._state:
            self._state = state
            changed = True
        if position != self._position:
            self._position = position
            changed = True
        self._ready_at = ready_at
        if (ready_at is None) != (self._notified_ready_at is None) or (
            ready_at is not None
            and self._notified_ready_at is not None
            and abs(ready_at - self._notified_ready_at) >= ETA_NOTIFY_STEP
        ):
            changed = True
        if changed:
            self._notified_ready_at = ready_at
            self._notify()

    def _finish(self, result: Audio | None, error: BaseException | None) -> None:
        self._result = result
        self._error = error
        self._done.set()
        self._update(state="done" if error is None else "failed", position=None, ready_at=None)

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback(self)
            except Exception:
                log.exception("A listener of ticket %d failed", self.id)


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
        self._probe = probe
        self._on_halt = on_halt
        self._on_resume = on_resume
        self._on_attempt = on_attempt

        #: Members with queued tickets, in serve order; each served member moves to the back.
        self._rotation: OrderedDict[int, deque[Ticket]] = OrderedDict()
        #: Tickets served before the rotation: hit by a 429, or waiting to retry (sorted).
        self._front: list[Ticket] = []
        self._running: dict[Ticket, asyncio.Task[None]] = {}
        self._active_by_user: dict[int, int] = {}  # queued + running
        self._cooldown_until: dict[int, float] = {}
        self._starts: deque[float] = deque()  # call start times within the last span
        self._latency = self.config.initial_latency
        self._paused_until: float | None = None
        self._penalty_until: float | None = None
        self._consecutive_429 = 0
        self._halted: SegmindError | None = None
        self._closed = False
        self._next_id = 0

        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed_event = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._halt_task: asyncio.Task[None] | None = None

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
            "Scheduler closing: %d queued, %d running", self._queued_count(), len(self._running)
        )
        try:
            for ticket in self._serve_order():
                self._drop_queued(ticket)
                self._fail(ticket, SchedulerClosedError())
            await _cancel_and_wait(self._halt_task, self._dispatcher)
            if self._running and grace > 0:
                await self._wait_for_idle(grace)
            await _cancel_and_wait(*self._running.values())
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
        if self._halted is not None:
            raise _fresh(self._halted)
        now = self._clock.now()
        length = self.config.user_cooldown if requester.cooldown is None else requester.cooldown
        cooled = follow_up or requester.cooldown == 0
        left = 0.0 if cooled else self.cooldown_remaining(user_id)
        if left > 0:
            raise CooldownError(left)
        limit = self.config.max_waiting_per_user
        if not follow_up and self._active_by_user.get(user_id, 0) >= limit:
            raise QueueFullError(per_user=True, limit=limit)
        if self._queued_count() >= self.config.max_queue:
            raise QueueFullError(per_user=False, limit=self.config.max_queue)

        self._next_id += 1
        ticket = Ticket(
            self,
            self._next_id,
            user_id,
            request,
            clock=self._clock,
            submitted_at=now,
            expires_at=now + self.config.job_timeout,
            guild_id=requester.guild_id,
        )
        self._rotation.setdefault(user_id, deque()).append(ticket)
        self._active_by_user[user_id] = self._active_by_user.get(user_id, 0) + 1
        if length > 0 and not cooled:
            self._forget_old_cooldowns(now)
            self._cooldown_until[user_id] = now + length
        self._refresh(now)
        log.info("Ticket %d queued for user %d at position %s", ticket.id, user_id, ticket.position)
        self._wake.set()
        return ticket

    def cooldown_remaining(self, user_id: int) -> float:
        """Seconds until `user_id` may submit again (0 if they may now)."""
        until = self._cooldown_until.get(user_id)
        if until is None:
            return 0.0
        return max(0.0, until - self._clock.now())

    @property
    def halted(self) -> SegmindError | None:
        """The operator problem that stopped all calls, until a probe says it is fixed."""
        return self._halted

    @property
    def paused_until(self) -> float | None:
        """Clock time a 429 pause lasts until, while one is in force."""
        if self._paused_until is None or self._paused_until <= self._clock.now():
            return None
        return self._paused_until

    @property
    def effective_rpm(self) -> int:
        """Calls allowed per span right now: lower for a while after a 429."""
        if self._penalty_until is not None and self._clock.now() < self._penalty_until:
            return self.config.penalty_rpm
        return self.config.rpm

    @property
    def stats(self) -> SchedulerStats:
        return SchedulerStats(
            served=self._served,
            failed=self._failed,
            rate_limited=self._rate_limited,
            retried=self._retried,
            queued=self._queued_count(),
            running=len(self._running),
            expired=self._expired,
            cancelled=self._cancelled,
        )

    def queue_snapshot(self) -> list[Ticket]:
        """Queued tickets (waiting retries included) in the order they will be served."""
        return [ticket for ticket, _ in self._plan(self._clock.now())]

    # -- queue bookkeeping -----------------------------------------------------------------

    def _queued_count(self) -> int:
        return len(self._front) + sum(len(q) for q in self._rotation.values())

    def _serve_order(self) -> list[Ticket]:
        """Every queued ticket: the front, then the rotation (not the timed serve order)."""
        return [*self._front, *self._round_robin()]

    def _round_robin(self) -> list[Ticket]:
        """The rotation in rounds: every member's first ticket, then every second one…"""
        order: list[Ticket] = []
        queues = [list(q) for q in self._rotation.values()]
        depth = 0
        while queues:
            order.extend(q[depth] for q in queues)
            depth += 1
            queues = [q for q in queues if len(q) > depth]
        return order

    def _drop_queued(self, ticket: Ticket) -> bool:
        """Take a queued ticket out of the queue; False if it was not queued."""
        if ticket in self._front:
            self._front.remove(ticket)
            return True
        queue = self._rotation.get(ticket.user_id)
        if queue is None or ticket not in queue:
            return False
        queue.remove(ticket)
        if not queue:
            del self._rotation[ticket.user_id]
        return True

    def _to_front(self, ticket: Ticket, not_before: float | None) -> None:
        # Listeners hear of it from the next refresh, with the ticket's new place.
        ticket._state = "queued"
        ticket._not_before = not_before
        bisect.insort(self._front, ticket, key=_front_key)

    def _pick(self, now: float) -> Ticket | None:
        """The next ticket to serve at `now`: a ready front ticket, else the next member's."""
        if self._front and _due(self._front[0], now):
            return self._front.pop(0)
        if self._rotation:
            user_id, queue = next(iter(self._rotation.items()))
            ticket = queue.popleft()
            if queue:
                self._rotation.move_to_end(user_id)
            else:
                del self._rotation[user_id]
            return ticket
        return None

    def _withdraw(self, ticket: Ticket) -> bool:
        if ticket.state != "queued" or not self._drop_queued(ticket):
            return False
        ticket._cancelled = True
        self._cancelled += 1
        self._release(ticket)
        ticket._finish(None, asyncio.CancelledError())
        log.info("Ticket %d withdrawn", ticket.id)
        self._refresh(self._clock.now())
        self._wake.set()
        return True

    def _release(self, ticket: Ticket) -> None:
        left = self._active_by_user.get(ticket.user_id, 0) - 1
        if left > 0:
            self._active_by_user[ticket.user_id] = left
        else:
            self._active_by_user.pop(ticket.user_id, None)

    def _fail(self, ticket: Ticket, error: BaseException) -> None:
        self._failed += 1
        self._release(ticket)
        ticket._finish(None, error)

    def _forget_old_cooldowns(self, now: float) -> None:
        if len(self._cooldown_until) > 1024:
            self._cooldown_until = {
                user: until for user, until in self._cooldown_until.items() if until > now
            }

    def _expire(self, now: float) -> float | None:
        """Fail tickets queued past job_timeout; return the next expiry time, if any."""
        soonest: float | None = None
        for ticket in self._serve_order():
            if ticket._expires_at <= now:
                self._drop_queued(ticket)
                self._expired += 1
                log.info("Ticket %d expired after %.0f s", ticket.id, now - ticket.submitted_at)
                self._fail(ticket, RequestExpiredError())
            elif soonest is None or ticket._expires_at < soonest:
                soonest = ticket._expires_at
        return soonest

    # -- pacing ----------------------------------------------------------------------------

    def _prune(self, now: float) -> None:
        span = self.config.span
        while self._starts and self._starts[0] + span <= now:
            self._starts.popleft()

    def _rate_ready(self, starts: Sequence[float], earliest: float) -> float:
        """The first time >= `earliest` a new call fits the sliding window after `starts`.

        A call at t needs fewer than R starts in (t - span, t], i.e. t >= starts[-R] + span,
        with R the penalty rate before the penalty ends and the full rate after.
        """
        span = self.config.span
        n = len(starts)

        def bound(rate: int) -> float:
            return starts[n - rate] + span if n >= rate else -math.inf

        full = max(earliest, bound(self.config.rpm))
        penalty_end = self._penalty_until
        if penalty_end is None or earliest >= penalty_end:
            return full
        reduced = max(earliest, bound(self.config.penalty_rpm))
        return reduced if reduced < penalty_end else max(full, penalty_end)

    def _earliest_start(self, now: float) -> float:
        if self._paused_until is not None and self._paused_until > now:
            return self._paused_until
        return now

    def _plan(self, now: float) -> list[tuple[Ticket, float]]:
        """Every queued ticket with its estimated start, in serve order, in O(queue).

        Simulates the dispatcher: each start waits for the pause, a free concurrency slot
        (running calls end at start + latency estimate) and a free rate slot.
        """
        if self._halted is not None or self._closed:
            return []
        latency = self._latency
        limit = self.config.max_concurrency
        self._prune(now)
        starts = list(self._starts)
        # Running calls end no later than now + latency, and simulated ones after that, so
        # this list stays sorted as simulated finishes are appended.
        finishes = sorted(max(now, t._started_at + latency) for t in self._running)
        busy = len(finishes)
        front = deque(self._front)
        rotation = self._round_robin()
        next_rr = 0
        at = self._earliest_start(now)
        plan: list[tuple[Ticket, float]] = []
        while front or next_rr < len(rotation):
            slot = busy + len(plan) - limit
            if slot >= 0:
                at = max(at, finishes[slot])
            at = self._rate_ready(starts, at)
            ticket: Ticket
            if front and _due(front[0], at):
                ticket = front.popleft()
            elif next_rr < len(rotation):
                ticket = rotation[next_rr]
                next_rr += 1
            else:  # only retries are left, none due yet
                ticket = front.popleft()
                at = max(at, _front_key(ticket)[0])
            starts.append(at)
            finishes.append(at + latency)
            plan.append((ticket, at))
        return plan

    def _refresh(self, now: float) -> None:
        """Recompute every queued ticket's place and ETA and notify those that changed."""
        for position, (ticket, start) in enumerate(self._plan(now), 1):
            ticket._update(position=position, ready_at=start + self._latency)
        for ticket in self._running:
            ticket._update(position=None, ready_at=max(now, ticket._started_at + self._latency))

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
        if self._halted is None and not self._closed:
            self._prune(now)
            while len(self._running) < self.config.max_concurrency and (
                self._front or self._rotation
            ):
                start = self._rate_ready(self._starts, self._earliest_start(now))
                if start > now:
                    wakes.append(start)
                    break
                ticket = self._pick(now)
                if ticket is None:  # only retries are left, none due yet
                    wakes.append(_front_key(self._front[0])[0])
                    break
                self._launch(ticket, now)
        self._refresh(now)
        return min(wakes) if wakes else None

    async def _wait(self, until: float | None) -> None:
        """Sleep until `until` (clock time) or until something wakes the dispatcher."""
        if self._wake.is_set():
            return
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait())}
        if until is not None:
            waiters.add(asyncio.ensure_future(self._clock.sleep(until - self._clock.now())))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancel_and_wait(*waiters)

    def _launch(self, ticket: Ticket, now: float) -> None:
        ticket.attempts += 1
        ticket._not_before = None
        ticket._started_at = now
        self._starts.append(now)
        self._idle.clear()
        self._running[ticket] = asyncio.get_running_loop().create_task(
            self._run(ticket), name=f"speech-ticket-{ticket.id}"
        )
        ticket._update(state="running", position=None, ready_at=now + self._latency)
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
            self._latency += LATENCY_EWMA_ALPHA * (took - self._latency)
            self._consecutive_429 = 0
            self._served += 1
            self._release(ticket)
            ticket._finish(audio, None)
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
        if self._halted is not None:
            self._fail(ticket, _fresh(self._halted))
            return
        if isinstance(exc, RateLimitedError):
            self._rate_limited += 1
            self._pause_for_429(exc, now)
            self._to_front(ticket, None)
            return
        if exc.retryable:
            ticket._failures += 1
            if ticket._failures < self.config.max_attempts:
                self._retried += 1
                delay = backoff_delay(
                    ticket._failures,
                    base=self.config.backoff_base,
                    cap=self.config.backoff_max,
                    rng=self._rng,
                )
                log.warning(
                    "Ticket %d: %s (attempt %d of %d); retrying in %.1f s",
                    ticket.id,
                    type(exc).__name__,
                    ticket._failures,
                    self.config.max_attempts,
                    delay,
                )
                self._to_front(ticket, now + delay)
                return
        log.warning(
            "Ticket %d failed: %s (status %s) after %d attempts",
            ticket.id,
            type(exc).__name__,
            exc.status,
            ticket.attempts,
        )
        self._fail(ticket, exc)

    def _pause_for_429(self, exc: RateLimitedError, now: float) -> None:
        """Pause every call until the reset (or a back-off) and run slower for a while."""
        jitter = self._rng() * self.config.margin
        if exc.retry_after is not None:
            wait = exc.retry_after + jitter
        else:
            self._consecutive_429 += 1
            first = self.config.window / self.config.rpm
            cap = max(self.config.span, self.config.backoff_max)
            wait = min(cap, first * 2.0 ** (self._consecutive_429 - 1)) + jitter
        until = now + wait
        if self._paused_until is None or until > self._paused_until:
            self._paused_until = until
        self._penalty_until = max(self._penalty_until or now, now + self.config.penalty_seconds)
        log.warning(
            "Rate limited (429): pausing all calls for %.1f s, then %d calls per %.0f s for %.0f s",
            wait,
            self.config.penalty_rpm,
            self.config.window,
            self.config.penalty_seconds,
        )

    def _halt(self, exc: SegmindError) -> None:
        """Stop all calls on an operator problem: fail everything queued, tell the operator."""
        if self._halted is not None or self._closed:
            return
        self._halted = exc
        log.error("Speech calls halted: %s", exc)
        for ticket in self._serve_order():
            self._drop_queued(ticket)
            self._fail(ticket, _fresh(exc))
        self._halt_task = asyncio.get_running_loop().create_task(
            self._while_halted(exc), name="speech-scheduler-halt"
        )
        self._wake.set()

    async def _while_halted(self, exc: SegmindError) -> None:
        if self._on_halt is not None:
            try:
                await self._on_halt(exc)
            except Exception:
                log.exception("on_halt failed")
        if self._probe is None:
            log.error("No probe configured: calls stay halted until the bot restarts")
            return
        while True:
            await self._clock.sleep(self.config.halt_probe_interval)
            try:
                ok = await self._probe()
            except Exception:
                log.exception("The halt probe failed")
                ok = False
            if ok:
                break
            log.info(
                "Still halted (%s); next check in %.0f s",
                type(exc).__name__,
                self.config.halt_probe_interval,
            )
        self._halted = None
        log.warning("Speech calls resumed: the probe says the account works again")
        self._wake.set()
        if self._on_resume is not None:
            try:
                await self._on_resume()
            except Exception:
                log.exception("on_resume failed")

    async def _wait_for_idle(self, grace: float) -> None:
        waiters: set[asyncio.Future[Any]] = {
            asyncio.ensure_future(self._idle.wait()),
            asyncio.ensure_future(self._clock.sleep(grace)),
        }
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancel_and_wait(*waiters)


def _front_key(ticket: Ticket) -> tuple[float, int]:
    """429-hit tickets (no not_before) first, then retries by due time; ties by age."""
    return (ticket._not_before if ticket._not_before is not None else -math.inf, ticket.id)


def _due(ticket: Ticket, now: float) -> bool:
    return ticket._not_before is None or ticket._not_before <= now


def _fresh(error: SegmindError) -> SegmindError:
    """A new error of the same type and message, so each ticket raises its own instance."""
    return type(error)(
        error.detail,
        status=error.status,
        upstream_message=error.upstream_message,
        user_message=error.user_message,
    )


async def _cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel tasks and wait until they have really finished, so nothing outlives its owner.

    `asyncio.wait` neither raises the tasks' errors nor swallows a cancellation of the caller.
    """
    pending = {task for task in tasks if task is not None and not task.done()}
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved
