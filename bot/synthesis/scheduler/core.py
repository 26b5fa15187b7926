"""The scheduler: every speech call in the bot goes through one paced, fair queue.

The API key allows 5 (free) or 50 (pro) calls a minute, each takes ~20 s and costs money, and
a whole server may ask at once. So the scheduler, not Segmind, decides when a call starts. It
admits requests (cooldowns and caps), and one dispatcher task starts every call that may start:
the fair queue (`queue.py`) says which ticket is next, the rate window (`window.py`) says when,
at the rate learned from the key's answers (`learn.py`: a mistyped SEGMIND_RPM is corrected by
the 429s it causes, and the operator told once), with as many calls in flight as that rate and
the observed latency need (`plan.concurrency_limit`). Each outcome routes the ticket
(`failures.py`): done; back to the front after a 429 (which pauses everyone, ends at once
those who cannot wait that long, see `deadline.py`, and is followed by an even release of the
queue at the learned rate, see `window.py`) or a retryable failure (with back-off,
until the request's deadline, while others are served); failed; or, for an operator problem,
the breaker (`breaker.py`) halts everything. Places and ETAs (`plan.py`) are computed lazily:
on demand, and at most every second for tickets that have listeners.

Per event (submit, cancel, dispatcher step, call outcome) the work is O(log n) in the queue:
nothing on that path walks the whole queue, so 10,000 queued tickets drain in linear time.

It knows nothing of Discord. Everything runs on one event loop; nothing here is thread-safe.
All time goes through a :class:`Clock`, so tests drive it deterministically.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from dataclasses import dataclass

from bot.errors import (
    BotError,
    CooldownError,
    QueueFullError,
    RequestExpiredError,
    SchedulerClosedError,
    SegmindError,
)
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest
from bot.synthesis.scheduler.aio import cancel_and_wait, first_of
from bot.synthesis.scheduler.base import Synthesize
from bot.synthesis.scheduler.breaker import fresh
from bot.synthesis.scheduler.failures import SchedulerFailures
from bot.synthesis.scheduler.gate import LOCAL_SLOT, REDIS_BUDGET, Admission
from bot.synthesis.scheduler.ticket import Attempt, Ticket
from bot.synthesis.scheduler.window import Stamp

__all__ = ["FAIR_TURN", "Scheduler", "SchedulerStats", "Synthesize"]

log = logging.getLogger(__name__)

#: Waiting for the full shared window, a process waits this share of the interval between
#: two starts longer per start it holds past an even share (see `Scheduler._turn_delay`).
FAIR_TURN = 0.02


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


class Scheduler(SchedulerFailures):
    """Paces, orders and retries speech calls for everyone; see the module docstring.

    Constructor arguments (see `SchedulerBase`): `synthesize`, `config`, and keyword-only
    `clock`, `rng` (jitter), `probe`/`on_halt`/`on_resume` (the breaker), `on_attempt` (usage),
    `on_limit_learned(rpm)` (called once when the key's limit proves lower than SEGMIND_RPM)
    and `wall_clock` (epoch seconds, for telling members when speech is back).
    """

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
            if self._chores:  # slots given back, a pause shared: a moment to reach Redis
                await first_of(asyncio.wait(set(self._chores)), self._clock.sleep(1.0))
                await cancel_and_wait(*self._chores)
        finally:
            self._closed_event.set()

    def submit(
        self, request: SpeechRequest, requester: Requester, *, follow_up: bool = False
    ) -> Ticket:
        """Queue a request, or raise before queueing anything (closed, halted, cooldown, full).

        `follow_up` marks a later chunk of a message already accepted: it neither waits for
        nor restarts the member's cooldown, and is not refused by their own waiting cap (it
        still counts toward it and toward the global queue cap). A requester's cooldown of 0
        (narration: every message is read) skips the cooldown; an uncapped requester (also
        narration) skips the waiting cap, never the global one.
        """
        user_id = requester.user_id
        refused = self.refusal(requester, follow_up=follow_up)
        if refused is not None:
            raise refused
        now = self._clock.now()
        length = self.config.user_cooldown if requester.cooldown is None else requester.cooldown
        cooled = follow_up or requester.cooldown == 0

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
            refresh=self._ensure_plan,
            watch=self._planner.watch,
        )
        self._queue.add(ticket)
        heapq.heappush(self._deadlines, (ticket.expires_at, ticket.id, ticket))
        if length > 0 and not cooled:
            self._cooldowns.start(user_id, now, length)
        self._planner.changed()
        log.info(
            "Ticket %d queued for user %d (%d queued)", ticket.id, user_id, self._queue.count()
        )
        self._wake.set()
        return ticket

    def refusal(self, requester: Requester, *, follow_up: bool = False) -> BotError | None:
        """What `submit` would refuse now (closed, halted, cooldown, full), queueing nothing:
        /speak asks before deferring, so these stay private while the cache is looked up
        after the deferral."""
        if self._closed:
            return SchedulerClosedError()
        if self._breaker.error is not None:
            return fresh(self._breaker.error)
        cooled = follow_up or requester.cooldown == 0
        left = 0.0 if cooled else self.cooldown_remaining(requester.user_id)
        if left > 0:
            return CooldownError(left)
        limit = self.config.max_waiting_per_user
        if not follow_up and requester.capped and self._queue.active(requester.user_id) >= limit:
            return QueueFullError(per_user=True, limit=limit)
        if self._queue.count() >= self.config.max_queue:
            return QueueFullError(per_user=False, limit=self.config.max_queue)
        return None

    def take_turn(self, requester: Requester) -> None:
        """Accept a new message whose calls are queued later (one held for a Stage's
        invitation): refuse it now if its member is cooling down, and start their cooldown
        as `submit` would, so its calls are later submitted without one (cooldown 0)."""
        if requester.cooldown == 0:
            return
        length = self.config.user_cooldown if requester.cooldown is None else requester.cooldown
        now = self._clock.now()
        left = self.cooldown_remaining(requester.user_id)
        if left > 0:
            raise CooldownError(left)
        if length > 0:
            self._cooldowns.start(requester.user_id, now, length)

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
        """Calls allowed per span right now: SEGMIND_RPM, or lower once 429s taught us so."""
        return self._window.rpm

    @property
    def concurrency(self) -> int:
        """Calls allowed in flight right now (from the rate and the latency estimate)."""
        return self._concurrency()

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
        """`Ticket.cancel`: take a still-queued ticket out and finish it as withdrawn (O(1))."""
        if ticket.state != "queued" or not self._queue.drop(ticket):
            return False
        self._cancelled += 1
        self._queue.release(ticket)
        self._planner.changed()
        ticket.mark_withdrawn()
        log.info("Ticket %d withdrawn", ticket.id)
        self._wake.set()
        return True

    def _expire(self, now: float) -> float | None:
        """Fail tickets queued past their deadline; return the next deadline, if any.

        Pops the deadline heap only as far as `now`: O(log n) per ticket, once. A ticket
        running when its deadline passes is dealt with if it comes back (`failures.py`).
        """
        heap = self._deadlines
        while heap:
            expires_at, _, ticket = heap[0]
            if ticket.state in ("done", "failed"):
                heapq.heappop(heap)
                continue
            if expires_at > now:
                return expires_at
            heapq.heappop(heap)
            if ticket.state == "queued" and self._queue.drop(ticket):
                self._expired += 1
                log.info("Ticket %d expired after %.0f s", ticket.id, now - ticket.submitted_at)
                self._fail(ticket, RequestExpiredError())
        return None

    def _ensure_plan(self) -> None:
        """A place or ETA is being read: bring them up to date if anything changed."""
        self._planner.ensure(self._clock.now())

    # -- the dispatcher --------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while not self._closed:
            self._wake.clear()
            try:
                until = self._step() if self._gate is None else await self._gated_step()
                until = self._tell_listeners(until)
            except Exception:
                log.exception("The scheduler's dispatcher failed; retrying in 1 s")
                until = self._clock.now() + 1.0
            await self._wait(until)

    def _step(self, slots: list[str] | None = None) -> float | None:
        """Start every call that may start now; return when to look again (None: on a wake).

        With a cluster gate each start also takes one of `slots` (the shared window's); when
        none is left the step stops and sets `_wants_slot` (see `_gated_step`).
        """
        self._wants_slot = False
        now = self._clock.now()
        wakes: list[float] = []
        next_expiry = self._expire(now)
        if next_expiry is not None:
            wakes.append(next_expiry)
        was = self._window.rpm
        if self._learner.tick(now):
            self._set_rate(self._learner.rpm, "no 429 for a while, so probing a little higher")
            self._share_rate(was)
        self._report_limit()
        if self._breaker.error is None and not self._closed:
            self._window.prune(now)
            limit = self._concurrency()
            while len(self._running) < limit and self._queue:
                earliest = self._window.earliest_start(now)
                start = self._window.rate_ready(earliest)
                if start > now:
                    if start > earliest:
                        self._learner.held_back(now)
                    wakes.append(start)
                    break
                if self._gate is not None and not slots:
                    if self._queue.pick_ready(now):
                        self._wants_slot = True
                    else:  # only retries are left, none due yet
                        wakes.append(self._queue.next_due())
                    break
                ticket = self._queue.pick(now)
                if ticket is None:  # only retries are left, none due yet
                    wakes.append(self._queue.next_due())
                    break
                self._launch(ticket, now, slots.pop() if slots else None)
        return min(wakes) if wakes else None

    async def _gated_step(self) -> float | None:
        """`_step`, asking the cluster's shared window for a slot before each start.

        One slot at a time (one Redis round trip each), so the shared window never hands out
        more than the calls about to start. A slot left over (the ticket was cancelled during
        the round trip, or the scheduler closed) is given back at once. Refused, the process
        asks again when told, not on every wake before (a call ending, a new ticket): those
        free no shared slot, and a process that asked on each would take more than its share.
        """
        assert self._gate is not None
        slots: list[str] = []
        try:
            while True:
                until = self._step(slots)
                if not self._wants_slot or self._closed:
                    return until
                if self._clock.now() < self._slot_at:
                    return self._slot_at if until is None else min(until, self._slot_at)
                admission = await self._ask_gate()
                now = self._clock.now()
                if admission.slot is not None:
                    slots.append(admission.slot)
                    continue
                if admission.paused:  # another process's 429: as if it were ours
                    if self._window.pause_until(now + admission.wait):
                        self._paused(now, now + admission.wait)
                    wake = now + admission.wait
                else:
                    self._learner.held_back(now)
                    wake = now + admission.wait + self._turn_delay(admission.ahead)
                self._slot_at = wake
                return wake if until is None else min(until, wake)
        finally:
            for slot in slots:
                if slot != LOCAL_SLOT:
                    self._tell_cluster(self._gate.give_back(slot), "an unused slot")

    def _turn_delay(self, ahead: float) -> float:
        """How much later than told to ask the full shared window again.

        It tells every process it refuses the same moment, when its oldest start leaves, and
        the first to ask then takes the slot: who wins each such race would decide the split.
        So a process holding more of the window's starts than an even share (`ahead` more)
        waits a little longer (`FAIR_TURN` of the interval between two starts at the rate,
        per start ahead), and lets the others go first: processes with equal demand share the
        key evenly. One alone in the window, or the processes even, waits nothing more.
        """
        return FAIR_TURN * ahead * self.config.span / self._window.rpm

    async def _ask_gate(self) -> Admission:
        """The shared window's answer; while it cannot be had, this process's own window's.

        Redis down (or slower than `REDIS_BUDGET`) must not silence every server: each process
        then paces itself as a lone bot does, at its share of the key (`_go_alone`), a 429
        from the key pauses it as usual, and the shared window takes over again as soon as
        it answers. Every answer tells how many processes share the key, for that share.
        """
        assert self._gate is not None
        try:
            async with asyncio.timeout(REDIS_BUDGET):
                admission = await self._gate.admit(self.config.rpm)
        except Exception as exc:
            if not self._gate_down:
                self._gate_down = True
                self._go_alone(exc)
            return Admission(LOCAL_SLOT)
        rejoined, self._gate_down = self._gate_down, False
        now = self._clock.now()
        if admission.sharers is not None:
            self._sharers.heard(admission.sharers, now)
        if rejoined:
            log.info("The rate window shared with other processes answers again")
        if admission.rpm is not None:
            self._follow_cluster(admission.rpm, now, rejoined=rejoined)
        return admission

    def _tell_listeners(self, until: float | None) -> float | None:
        """Refresh places and ETAs for listeners if due; return the next moment to look."""
        now = self._clock.now()
        due = self._planner.due(now)
        if due is None:
            return until
        if due <= now:
            self._planner.refresh(now)
            return until
        return due if until is None else min(until, due)

    async def _wait(self, until: float | None) -> None:
        """Sleep until `until` (clock time) or until something wakes the dispatcher."""
        if self._wake.is_set():
            return
        if until is None:
            await first_of(self._wake.wait())
        else:
            await first_of(self._wake.wait(), self._clock.sleep(until - self._clock.now()))

    def _launch(self, ticket: Ticket, now: float, slot: str | None = None) -> None:
        stamp = self._window.record_start(now, slot or None)
        self._learner.started(ticket.id, now)
        self._idle.clear()
        self._running[ticket] = asyncio.get_running_loop().create_task(
            self._run(ticket, stamp), name=f"speech-ticket-{ticket.id}"
        )
        self._planner.changed()
        ticket.mark_running(now, ready_at=now + self._latency.seconds)
        if ticket.attempts == 1:  # A retry's wait is the back-off, not the queue's.
            self.queue_waits.observe(now - ticket.submitted_at)
        log.info(
            "Ticket %d (user %d) attempt %d started after %.1f s in queue",
            ticket.id,
            ticket.user_id,
            ticket.attempts,
            now - ticket.submitted_at,
        )

    async def _run(self, ticket: Ticket, stamp: Stamp) -> None:
        started = self._clock.now()
        # The call really begins now: the server will count it from about here.
        stamp.at = max(stamp.at, started)
        self._learner.began(ticket.id, started)
        try:
            audio = await self._synthesize(ticket.request)
        except asyncio.CancelledError:
            self._running.pop(ticket, None)
            self._fail(ticket, SchedulerClosedError())
            raise
        except SegmindError as exc:
            self._running.pop(ticket, None)
            self._record(ticket, exc.status, started, 0.0)
            self._on_error(ticket, exc, stamp)
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
            self._planner.changed()
            ticket.finish(audio)
            log.info("Ticket %d done in %.1f s (attempt %d)", ticket.id, took, ticket.attempts)
        finally:
            self._learner.ended(ticket.id)  # a no-op after a 429, which `refused` took
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
