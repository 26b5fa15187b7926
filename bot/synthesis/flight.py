"""One call that identical requests share (`Flight`), a request's share of it (`Pending`), and
the protocols coalescing across processes is asked through (`SharedFlights`, `Claim`).

`SpeechSource` (`stream.py`) makes and joins flights; the Redis side lives in
`bot.synthesis.cluster.flights`, which this module never imports: without REDIS_URL nothing
here touches Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from bot.audio import Audio
from bot.synthesis.scheduler import Ticket

__all__ = ["Claim", "Claiming", "Flight", "Pending", "SharedFlights"]


class Claim(Protocol):
    """This process calls for a key other processes may want too (`SharedFlights`)."""

    async def publish(self, audio: Audio) -> None:
        """Hand the answer to every process waiting for it, and free the key (never raises)."""
        ...

    async def release(self) -> None:
        """No answer after all (failed, withdrawn): free the key so a waiter calls itself."""
        ...


class SharedFlights(Protocol):
    """Coalescing across processes (`bot.synthesis.cluster.flights` over Redis): asked on a
    local miss, before the scheduler, so a process waiting for another's call holds no ticket
    and no rate slot. Coordination trouble is its own to absorb: at worst it answers with a
    claim that shares nothing, and the process calls alone."""

    async def claim(self, key: str) -> Audio | Claim | None:
        """The answer if another process just made it, a claim (call, then publish or release),
        or None while another process is calling."""
        ...

    async def wait(self, key: str) -> Audio | Claim:
        """Until the other process's answer is there, or its claim is gone (it failed or died)
        and this process now holds one. Cancelling it leaves no claim behind."""
        ...


@dataclass(eq=False)
class Flight:
    """One API call that identical requests share.

    `ticket` is None while the call is another process's (`task` waits for its answer);
    `on_ticket` is told if this process ends up queueing the call itself.
    """

    key: str
    ticket: Ticket | None
    future: asyncio.Future[Audio]
    waiters: int = 1
    task: asyncio.Task[None] | None = None
    on_ticket: list[Callable[[], None]] = field(default_factory=list)


@dataclass(eq=False)
class Pending:
    """One chunk's audio to come (or already here)."""

    ready: Audio | None = None
    flight: Flight | None = None
    released: bool = field(default=False)
    #: Joined a call another request made here: free for this one, whatever becomes of it
    #: (the call is that request's, and paid by its member).
    joined: bool = False

    @property
    def ticket(self) -> Ticket | None:
        """The queued call, for progress; None for a cache hit, or while another process
        makes the audio."""
        return self.flight.ticket if self.flight else None

    async def result(self) -> Audio:
        if self.ready is not None:
            return self.ready
        assert self.flight is not None
        # Shielded: one waiter giving up must not cancel the call others share.
        return await asyncio.shield(self.flight.future)

    def release(self) -> None:
        """This waiter no longer wants it; the call (or the wait for another process's) is
        withdrawn once nobody does."""
        if self.flight is None or self.released:
            return
        self.released = True
        flight = self.flight
        flight.waiters -= 1
        if flight.waiters > 0 or flight.future.done():
            return
        if flight.ticket is not None:
            flight.ticket.cancel()
        elif flight.task is not None:
            flight.task.cancel()


@dataclass(eq=False)
class Claiming:
    """Requests for one key asking Redis in turn, so a second one joins the first's flight
    instead of waiting on its own process's claim."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
