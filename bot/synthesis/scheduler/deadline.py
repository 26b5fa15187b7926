"""Deadlines under a long 429: end at once the requests that cannot make it, and say when.

A 429 may say the key is spent for a quarter of an hour, longer than a request may wait
(`job_timeout`). Waiting anyway meant every queued member was dropped silently minutes later.
So after each 429 the scheduler plans again with the pause in force: tickets whose planned start
is at or past their own deadline end now with `PausedTooLongError`, which tells the member when
speech is expected back; the rest keep their place and their listeners hear the new ETA.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from bot.errors import RequestExpiredError
from bot.locales import line
from bot.synthesis.scheduler.ticket import Ticket

__all__ = ["PausedTooLongError", "cannot_make_it"]


class PausedTooLongError(RequestExpiredError):
    """The service paused all calls past this request's deadline; it was never sent.

    A `RequestExpiredError` (it would have expired), ended at once instead of minutes later.
    `resume_at` is the wall-clock time (epoch seconds) calls are expected to resume, for a
    front end that can show it in the reader's own time zone.
    """

    def __init__(self, wait: float, *, wall_now: float | None = None) -> None:
        now = time.time() if wall_now is None else wall_now
        self.wait = max(0.0, wait)
        self.resume_at = now + self.wait
        clock = datetime.fromtimestamp(self.resume_at, UTC).strftime("%H:%M")
        super().__init__(
            f"the speech service paused calls for {self.wait:.0f} s, past this request's deadline",
            user_message=line(
                "error.paused_too_long", clock=clock, minutes=max(1, math.ceil(self.wait / 60))
            ),
        )


def cannot_make_it(planned: Iterable[tuple[Ticket, float]]) -> list[Ticket]:
    """The planned tickets whose estimated start is at or past their own deadline."""
    return [ticket for ticket, start in planned if start >= ticket.expires_at]
