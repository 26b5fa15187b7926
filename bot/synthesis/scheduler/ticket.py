"""A ticket: one accepted request as the member's command sees it, and as the scheduler moves it.

Commands hold a `Ticket` for as long as a member waits: they read its state, place and ETA,
listen for changes to edit their message, await the audio, and may withdraw it. The scheduler
moves it through queued → running → (queued again for a retry) → done or failed, only through
the methods under "scheduler side", so a ticket's fields stay consistent and its listeners hear
of every change they can see. A ticket does not know the scheduler: withdrawing goes through
the callback it was made with, and so does reading a place or an ETA (`refresh`, which lets
the scheduler compute places lazily, only when someone looks) and adding a listener (`watch`,
so the scheduler keeps watched tickets' places fresh without being asked).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bot.audio import Audio
from bot.speech.request import SpeechRequest
from bot.synthesis.scheduler.config import Clock

__all__ = ["ETA_NOTIFY_STEP", "Attempt", "Ticket", "TicketState"]

log = logging.getLogger(__name__)

TicketState = Literal["queued", "running", "done", "failed"]

#: Listeners hear of an ETA change only when the estimated finish moved by at least this much,
#: so a small latency update does not turn into one Discord message edit per queued member.
ETA_NOTIFY_STEP = 1.0


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
        "_on_done",
        "_position",
        "_ready_at",
        "_refresh",
        "_result",
        "_started_at",
        "_state",
        "_taken",
        "_watch",
        "_withdraw",
        "attempts",
        "guild_id",
        "id",
        "request",
        "submitted_at",
        "user_id",
    )

    def __init__(
        self,
        ticket_id: int,
        user_id: int,
        request: SpeechRequest,
        *,
        clock: Clock,
        submitted_at: float,
        expires_at: float,
        withdraw: Callable[[Ticket], bool],
        guild_id: int | None = None,
        refresh: Callable[[], None] | None = None,
        watch: Callable[[Ticket], None] | None = None,
    ) -> None:
        self.id = ticket_id
        self.user_id = user_id
        self.guild_id = guild_id
        self.request = request
        self.submitted_at = submitted_at
        #: HTTP attempts made so far, 429s included.
        self.attempts = 0
        self._withdraw = withdraw
        self._refresh = refresh
        self._watch = watch
        self._clock = clock
        self._expires_at = expires_at
        self._state: TicketState = "queued"
        self._position: int | None = None
        self._ready_at: float | None = None
        self._notified_ready_at: float | None = None
        self._not_before: float | None = None  # set while waiting to retry after a failure
        self._failures = 0  # retryable non-429 failures (max_attempts, if set, bounds them)
        self._started_at = 0.0
        self._listeners: list[Callable[[Ticket], None]] = []
        self._on_done: list[Callable[[Ticket], None]] = []
        self._done = asyncio.Event()
        self._result: Audio | None = None
        self._taken = False
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
        self._fresh()
        return self._position

    @property
    def eta(self) -> float | None:
        """Estimated seconds until the audio is ready; None once finished."""
        self._fresh()
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
        if self._watch is not None and self._state in ("queued", "running"):
            self._watch(self)

    def when_done(self, callback: Callable[[Ticket], None]) -> None:
        """Call `callback(ticket)` once it is done, failed or withdrawn (at once if it is).

        It runs in the same step as the scheduler's usage report of the last attempt, with
        no await between: a quota counting the call moves from its reservation to its usage
        record without a moment counted twice. Unlike a listener, it keeps no place fresh.
        """
        if self._done.is_set():
            callback(self)
        else:
            self._on_done.append(callback)

    async def result(self) -> Audio:
        """The audio, or raise the final error. Cancelling the awaiting task leaves the ticket
        untouched; a withdrawn ticket raises `asyncio.CancelledError`."""
        await self._done.wait()
        if self._cancelled:
            raise asyncio.CancelledError
        if self._error is not None:
            raise self._error
        if self._taken:
            raise RuntimeError(f"ticket {self.id}'s audio was already taken by its reader")
        assert self._result is not None
        return self._result

    async def take_result(self) -> Audio:
        """`result`, for the one reader that keeps what it makes of it (`SpeechSource`): the
        ticket then lets go of the audio, an upstream answer (a WAV body and its samples, ten
        times the Ogg Opus made of them) that would otherwise live as long as anything holds
        the ticket, as a message waiting to be read holds its stream's. Reading it again
        raises RuntimeError."""
        audio = await self.result()
        self._result, self._taken = None, True
        return audio

    def cancel(self) -> bool:
        """Withdraw the ticket if it is still queued (a running call is already paid for)."""
        return self._withdraw(self)

    def _fresh(self) -> None:
        """Let the scheduler bring places and ETAs up to date before one is read."""
        if self._refresh is not None and self._state in ("queued", "running"):
            self._refresh()

    # -- scheduler side: read -------------------------------------------------------------

    @property
    def expires_at(self) -> float:
        """Clock time after which a still-queued ticket fails with `RequestExpiredError`."""
        return self._expires_at

    @property
    def not_before(self) -> float | None:
        """Clock time a retry may start at; None when it may start at once."""
        return self._not_before

    @property
    def started_at(self) -> float:
        """Clock time the latest attempt started (0.0 before the first)."""
        return self._started_at

    def due(self, now: float) -> bool:
        """May start at `now`: not waiting out a retry back-off."""
        return self._not_before is None or self._not_before <= now

    # -- scheduler side: move -------------------------------------------------------------

    def mark_running(self, now: float, ready_at: float) -> None:
        """An attempt starts at `now`, expected to finish at `ready_at`."""
        self.attempts += 1
        self._not_before = None
        self._started_at = now
        self._update(state="running", position=None, ready_at=ready_at)

    def requeue(self, not_before: float | None) -> None:
        """Back in the queue after a failed attempt, to start no sooner than `not_before`.

        Listeners hear of it from the next `update_plan`, with the ticket's new place.
        """
        self._state = "queued"
        self._not_before = not_before

    def count_failure(self) -> int:
        """Count one retryable failure (429s are not counted); return the count so far."""
        self._failures += 1
        return self._failures

    def update_plan(self, position: int | None, ready_at: float) -> None:
        """Set the place and the estimated finish; listeners hear if what they show changed."""
        self._update(position=position, ready_at=ready_at)

    def finish(self, audio: Audio) -> None:
        """Done: `result()` returns `audio`."""
        self._finish(audio, None)

    def fail(self, error: BaseException) -> None:
        """Failed: `result()` raises `error`."""
        self._finish(None, error)

    def mark_withdrawn(self) -> None:
        """Withdrawn while queued: `cancelled` is set and `result()` raises CancelledError."""
        self._cancelled = True
        self._finish(None, asyncio.CancelledError())

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
        callbacks, self._on_done = self._on_done, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("A done callback of ticket %d failed", self.id)
        self._update(state="done" if error is None else "failed", position=None, ready_at=None)

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback(self)
            except Exception:
                log.exception("A listener of ticket %d failed", self.id)
