"""Planning: when each queued ticket should start and be ready, so members see a place and ETA.

A member who waits wants to know how long. The plan answers by simulating the dispatcher on
the current state: tickets in the fair queue's order, each start waiting for the 429 pause,
a free concurrency slot (a call ends at its start plus the latency estimate) and a free slot
in the rate window. The latency estimate is an average of recent calls, weighted to the newest.

Pure: reads the queue and the window, changes neither, and takes the time as an argument.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from bot.synthesis.scheduler.queue import FairQueue, due_at
from bot.synthesis.scheduler.ticket import Ticket
from bot.synthesis.scheduler.window import RateWindow

__all__ = ["LATENCY_EWMA_ALPHA", "LatencyEstimate", "plan"]

#: Weight of the newest observed call duration in the latency estimate.
LATENCY_EWMA_ALPHA = 0.3


class LatencyEstimate:
    """How long a call takes, as an exponentially weighted moving average of finished ones."""

    __slots__ = ("seconds",)

    def __init__(self, initial: float) -> None:
        self.seconds = initial

    def observe(self, took: float) -> None:
        """A call took `took` seconds."""
        self.seconds += LATENCY_EWMA_ALPHA * (took - self.seconds)


def plan(
    queue: FairQueue,
    window: RateWindow,
    *,
    now: float,
    running: Iterable[Ticket],
    latency: float,
    limit: int,
) -> list[tuple[Ticket, float]]:
    """Every queued ticket with its estimated start, in serve order, in O(queue).

    `running` are the calls in flight, `latency` the estimated call duration and `limit` the
    number of calls that may run at once. Prunes the window's log (as the dispatcher would).
    """
    window.prune(now)
    starts = list(window.starts)
    # Running calls end no later than now + latency, and simulated ones after that, so
    # this list stays sorted as simulated finishes are appended.
    finishes = sorted(max(now, t.started_at + latency) for t in running)
    busy = len(finishes)
    front = deque(queue.front_lane())
    rotation = queue.round_robin()
    next_rr = 0
    at = window.earliest_start(now)
    planned: list[tuple[Ticket, float]] = []
    while front or next_rr < len(rotation):
        slot = busy + len(planned) - limit
        if slot >= 0:
            at = max(at, finishes[slot])
        at = window.rate_ready(at, starts)
        ticket: Ticket
        if front and front[0].due(at):
            ticket = front.popleft()
        elif next_rr < len(rotation):
            ticket = rotation[next_rr]
            next_rr += 1
        else:  # only retries are left, none due yet
            ticket = front.popleft()
            at = max(at, due_at(ticket))
        starts.append(at)
        finishes.append(at + latency)
        planned.append((ticket, at))
    return planned
