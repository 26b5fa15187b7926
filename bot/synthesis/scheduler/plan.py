"""Planning: when each queued ticket should start and be ready, so members see a place and ETA.

A member who waits wants to know how long. The plan answers by simulating the dispatcher on
the current state: tickets in the fair queue's order, each start waiting for the 429 pause,
a free concurrency slot (a call ends at its start plus the latency estimate) and a free slot
in the rate window. The latency estimate is an average of recent calls, weighted to the newest.

`plan` is pure: reads the queue and the window, changes neither, and takes the time as an
argument. It is O(queue), so it is not run on every event (issue 11, point 12: rebuilding it on
each submit, step and cancel made draining 10,000 tickets quadratic): `Planner` recomputes it
lazily, when someone reads a place or an ETA, and otherwise at most every `PLAN_INTERVAL`
seconds while some waiting ticket has a listener (a member's message to edit), or at once
when a 429 changed everyone's times.

`concurrency_limit` says how many calls may be in flight (issue 11, point 11): by Little's law
in-flight = start rate × latency. The window lets at most `rpm` calls start per span, so calls
lasting L seconds overlap at most rpm × ceil(L / span) deep; allowing that (with headroom on
the latency estimate) means concurrency never holds back a start the rate allows, a burst of
`rpm` goes at once, and a cap still guards against calls that hang.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable

from bot.synthesis.scheduler.queue import FairQueue, due_at
from bot.synthesis.scheduler.ticket import Ticket
from bot.synthesis.scheduler.window import RateWindow

__all__ = [
    "LATENCY_EWMA_ALPHA",
    "LATENCY_HEADROOM",
    "PLAN_INTERVAL",
    "LatencyEstimate",
    "Planner",
    "concurrency_limit",
    "plan",
]

#: Weight of the newest observed call duration in the latency estimate.
LATENCY_EWMA_ALPHA = 0.3
#: Concurrency allows for calls this much slower than the latency estimate.
LATENCY_HEADROOM = 1.5
#: Listeners hear of place and ETA changes at most this often (seconds), unless asked.
PLAN_INTERVAL = 1.0


def concurrency_limit(*, rpm: int, span: float, latency: float, cap: int) -> int:
    """Calls allowed in flight: every start the rate allows, for calls as slow as estimated."""
    deep = max(1, math.ceil(latency * LATENCY_HEADROOM / span))
    return max(1, min(cap, rpm * deep))


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
    starts = window.starts
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


class Planner:
    """Keeps places and ETAs up to date lazily: on demand, or batched for listeners.

    `compute(now)` is the plan of the moment (`plan` with the scheduler's state); `running`
    the tickets in flight; `latency` the estimate ETAs add to a start.
    """

    def __init__(
        self,
        compute: Callable[[float], list[tuple[Ticket, float]]],
        running: Iterable[Ticket],
        latency: LatencyEstimate,
        *,
        interval: float = PLAN_INTERVAL,
    ) -> None:
        self._compute = compute
        self._running = running
        self._latency = latency
        self._interval = interval
        self._dirty = True
        self._last = -math.inf
        self._watched: set[Ticket] = set()

    def changed(self) -> None:
        """Something places or ETAs depend on changed (O(1): nothing is recomputed here)."""
        self._dirty = True

    def watch(self, ticket: Ticket) -> None:
        """`ticket` has a listener: keep its place and ETA fresh without being asked."""
        self._watched.add(ticket)

    def due(self, now: float) -> float | None:
        """When listeners should next hear (clock time); None: nothing is waiting to be told."""
        if not self._dirty or not self._watched:
            return None
        return max(now, self._last + self._interval)

    def ensure(self, now: float) -> None:
        """Recompute if anything changed since the last time (a place or ETA is being read)."""
        if self._dirty:
            self.refresh(now)

    def refresh(self, now: float) -> list[tuple[Ticket, float]]:
        """Recompute every place and ETA now, notify listeners of changes; return the plan."""
        self._dirty = False
        self._last = now
        latency = self._latency.seconds
        planned = self._compute(now)
        for position, (ticket, start) in enumerate(planned, 1):
            ticket.update_plan(position, start + latency)
        for ticket in list(self._running):
            ticket.update_plan(None, max(now, ticket.started_at + latency))
        self._watched = {t for t in self._watched if t.state in ("queued", "running")}
        return planned
