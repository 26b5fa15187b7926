"""What the scheduler does when a call fails: retry, wait out a 429, learn, halt, or give up.

* A 429 pauses every call until the reset, however long; the learner (`learn.py`) may lower
  the rate; the hit ticket goes back to the front; then everyone is planned again with the
  pause in force, and those who cannot start before their own deadline end at once with a
  message saying when speech is expected back (`deadline.py`); the rest hear their new ETA.
  A pause another process shares through Redis is planned for the same way.
* A retryable failure (5xx, timeout, dropped connection) is retried with jittered back-off
  until the request's own deadline (Segmind bills only successful calls, so trying again
  costs nothing), or until `max_attempts` failures when the operator set a cap.
* An operator problem (key, credits, model) trips the breaker and fails everything queued.
* Anything else fails that ticket alone.
"""

from __future__ import annotations

import logging
import math

from bot.errors import RateLimitedError, SchedulerClosedError, SegmindError
from bot.synthesis.backoff import backoff_delay
from bot.synthesis.scheduler.base import SchedulerBase
from bot.synthesis.scheduler.breaker import fresh
from bot.synthesis.scheduler.deadline import PausedTooLongError, cannot_make_it
from bot.synthesis.scheduler.ticket import Ticket
from bot.synthesis.scheduler.window import Stamp

__all__ = ["SchedulerFailures"]

log = logging.getLogger(__name__)


class SchedulerFailures(SchedulerBase):
    """The failure routing of `Scheduler`; see the module docstring."""

    def _on_error(self, ticket: Ticket, exc: SegmindError, stamp: Stamp | None = None) -> None:
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
            self._on_429(ticket, exc, now, stamp)
            return
        if exc.retryable and self._retry(ticket, exc, now):
            return
        log.warning(
            "Ticket %d failed: %s (status %s) after %d attempts",
            ticket.id,
            type(exc).__name__,
            exc.status,
            ticket.attempts,
        )
        self._fail(ticket, exc)

    def _retry(self, ticket: Ticket, exc: SegmindError, now: float) -> bool:
        """Queue a retry after back-off if the deadline (and any attempt cap) allows it."""
        failures = ticket.count_failure()
        cap = self.config.max_attempts
        if cap and failures >= cap:
            return False
        delay = backoff_delay(
            failures, base=self.config.backoff_base, cap=self.config.backoff_max, rng=self._rng
        )
        if now + delay >= ticket.expires_at:
            log.info("Ticket %d: no time left before its deadline for another attempt", ticket.id)
            return False
        self._retried += 1
        log.warning(
            "Ticket %d: %s (failure %d%s); retrying in %.1f s",
            ticket.id,
            type(exc).__name__,
            failures,
            f" of {cap}" if cap else "",
            delay,
        )
        self._requeue(ticket, now + delay)
        return True

    def _requeue(self, ticket: Ticket, not_before: float | None) -> None:
        """Back to the front lane: a 429-hit ticket at once, a retry once it is due."""
        ticket.requeue(not_before)
        self._queue.push_front(ticket)
        self._planner.changed()

    def _on_429(
        self, ticket: Ticket, exc: RateLimitedError, now: float, stamp: Stamp | None
    ) -> None:
        """Pause everyone, learn from it, serve the hit ticket first, end who cannot wait.

        A refusal blamed on timing, or one that brought the rate down to what the server let
        through, gives its slot in the rate window back (the server did not count it, and
        holding it would push the retry a whole window later); one that leaves the rate above
        that keeps it, so a burst of refusals also slows what follows (see `learn.py`).
        """
        give_back = self._learner.refused(ticket.id, now)
        if give_back and stamp is not None:
            self._window.forget(stamp)
            if self._gate is not None and stamp.slot is not None:
                self._tell_cluster(self._gate.give_back(stamp.slot), "a refused call's slot")
                self._slot_at = -math.inf  # a slot is free again: ask when the pause ends
        jitter = self._rng() * self.config.margin
        wait = self._window.pause_for_429(
            now, exc.retry_after, jitter, started_at=ticket.started_at
        )
        if self._gate is not None:
            self._tell_cluster(self._gate.pause(wait), "a 429 pause")
        # One warning per pause, not one per refused call of a burst.
        level = logging.WARNING if ticket.started_at > self._last_pause else logging.DEBUG
        self._last_pause = max(self._last_pause, now)
        log.log(
            level,
            "Rate limited (429): pausing all calls for %.1f s%s",
            wait,
            "" if exc.retry_after is not None else " (no reset time given)",
        )
        was = self._window.rpm
        self._set_rate(self._learner.rpm, "the API key refused calls past that")
        self._share_rate(was, wait)
        self._report_limit()
        self._requeue(ticket, None)
        self._paused(now, now + wait)

    def _paused(self, now: float, until: float) -> None:
        """A 429 pause is in force until `until`, this process's own or one another process
        shared through Redis (`core.py`): the same for both, so a member's request ends
        early, or waits with a new estimate, whichever process the 429 came to."""
        self._learner.hold_from(until)
        self._end_those_who_cannot_wait(now)

    def _end_those_who_cannot_wait(self, now: float) -> None:
        """Plan with the pause in force; end at once the tickets that would pass their deadline.

        Everyone else's listeners hear the new ETA from the same plan.
        """
        late = cannot_make_it(self._planner.refresh(now))
        if not late:
            return
        resume = self._window.paused_until(now) or now
        for ticket in late:
            if self._queue.drop(ticket):
                self._expired += 1
                self._fail(ticket, PausedTooLongError(resume - now, wall_now=self._wall_clock()))
        log.warning(
            "%d queued request(s) cannot start before their deadline (calls resume in %.0f s); "
            "their members were told when speech is expected back",
            len(late),
            resume - now,
        )
        self._planner.refresh(now)

    def _report_limit(self) -> None:
        """Once: the configured rate looks higher than the key allows (see `learn.py`)."""
        rpm = self._learner.report
        if rpm is None:
            return
        self._learner.report = None
        log.warning(
            "SEGMIND_RPM is %d, but the API key refuses calls past about %d per %.0f s; the "
            "bot paces at that rate now and probes upward only rarely. If that is your plan's "
            "limit, set SEGMIND_RPM=%d (another client using the same key also counts).",
            self.config.rpm,
            rpm,
            self.config.window,
            rpm,
        )
        if self._on_limit_learned is not None:
            try:
                self._on_limit_learned(rpm)
            except Exception:
                log.exception("on_limit_learned failed")

    def _halt(self, exc: SegmindError) -> None:
        """Stop all calls on an operator problem: fail everything queued, tell the operator."""
        if self._breaker.error is not None or self._closed:
            return
        self._breaker.trip(exc)
        for ticket in self._queue.serve_order():
            self._queue.drop(ticket)
            self._fail(ticket, fresh(exc))
        self._wake.set()
