"""Tickets for unit tests of the scheduler's parts, made without a scheduler."""

from __future__ import annotations

from collections.abc import Callable

from bot.speech.request import SpeechRequest
from bot.synthesis.scheduler import Ticket


class StillClock:
    """A clock that stays where a test puts it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.at = now

    def now(self) -> float:
        return self.at

    async def sleep(self, seconds: float) -> None:
        self.at += seconds


def make_ticket(
    ticket_id: int,
    user_id: int,
    *,
    clock: StillClock | None = None,
    text: str = "hello",
    expires_at: float = 10_000.0,
    withdraw: Callable[[Ticket], bool] = lambda ticket: False,
) -> Ticket:
    clock = clock or StillClock()
    return Ticket(
        ticket_id,
        user_id,
        SpeechRequest(text=text),
        clock=clock,
        submitted_at=clock.now(),
        expires_at=expires_at,
        withdraw=withdraw,
    )
