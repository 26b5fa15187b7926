"""The fair queue: who is served next, so one member's many requests cannot starve the others.

Members are served round-robin: each member's first waiting ticket, then each one's second…
and a member served moves to the back. Before the rotation comes a front lane: a ticket hit by
a 429 is served first once the pause ends (it was next already, and must not lose its place),
then tickets waiting out a retry back-off, each once it is due. The queue also counts each
member's active tickets (queued and running) for the per-member cap.

Every operation the dispatcher makes per event is O(1) or O(log n) (issue 11, point 12: with
10,000 queued, anything linear per event made draining quadratic): the count is kept, not
summed; each member's line is an ordered dict keyed by ticket id, so `drop` (a withdrawal or an
expiry) is O(1); the front lane is a heap with lazy deletion (a dropped entry is skipped when
it reaches the top). Only the views that list everything (`round_robin`, `serve_order`,
`front_lane`) are linear, and only planning, close and halt use them.

A plain data structure: no asyncio and no clock of its own; callers pass the time in.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict

from bot.synthesis.scheduler.ticket import Ticket

__all__ = ["FairQueue", "due_at", "front_key"]


def due_at(ticket: Ticket) -> float:
    """When a queued ticket may start: its retry time, or -inf if it may start at once."""
    return ticket.not_before if ticket.not_before is not None else -math.inf


def front_key(ticket: Ticket) -> tuple[float, int]:
    """429-hit tickets (no not_before) first, then retries by due time; ties by age."""
    return (due_at(ticket), ticket.id)


class FairQueue:
    """Queued tickets in serve order, and every member's count of active tickets."""

    def __init__(self) -> None:
        #: Members with queued tickets, in serve order; each served member moves to the back.
        #: Each member's line is keyed by ticket id, so a ticket leaves it in O(1).
        self._rotation: OrderedDict[int, OrderedDict[int, Ticket]] = OrderedDict()
        #: Tickets served before the rotation (hit by a 429, or waiting to retry), as a heap
        #: of (due, id, ticket); `_in_front` says which entries are still live.
        self._front: list[tuple[float, int, Ticket]] = []
        self._in_front: dict[int, Ticket] = {}
        self._count = 0
        self._active_by_user: dict[int, int] = {}  # queued + running

    def __bool__(self) -> bool:
        """Anything queued."""
        return self._count > 0

    def count(self) -> int:
        """How many tickets are queued, waiting retries included (O(1))."""
        return self._count

    def active(self, user_id: int) -> int:
        """`user_id`'s tickets that are queued or running."""
        return self._active_by_user.get(user_id, 0)

    def add(self, ticket: Ticket) -> None:
        """Queue a new ticket at the back of its member's line; it becomes active."""
        line = self._rotation.get(ticket.user_id)
        if line is None:
            line = self._rotation[ticket.user_id] = OrderedDict()
        line[ticket.id] = ticket
        self._count += 1
        self._active_by_user[ticket.user_id] = self.active(ticket.user_id) + 1

    def push_front(self, ticket: Ticket) -> None:
        """Queue an active ticket again, in the front lane, by its due time (`due_at`)."""
        heapq.heappush(self._front, (due_at(ticket), ticket.id, ticket))
        self._in_front[ticket.id] = ticket
        self._count += 1

    def release(self, ticket: Ticket) -> None:
        """`ticket` has finished (or was withdrawn): it no longer counts as active."""
        left = self._active_by_user.get(ticket.user_id, 0) - 1
        if left > 0:
            self._active_by_user[ticket.user_id] = left
        else:
            self._active_by_user.pop(ticket.user_id, None)

    def _front_top(self) -> Ticket | None:
        """The first live front-lane ticket, discarding dropped entries on the way."""
        while self._front:
            ticket = self._front[0][2]
            if self._in_front.get(ticket.id) is ticket:
                return ticket
            heapq.heappop(self._front)
        return None

    def pick(self, now: float) -> Ticket | None:
        """Take the next ticket to serve at `now`: a due front ticket, else the next member's.

        None when only retries are left and none is due yet (see `next_due`).
        """
        top = self._front_top()
        if top is not None and top.due(now):
            heapq.heappop(self._front)
            del self._in_front[top.id]
            self._count -= 1
            return top
        if self._rotation:
            user_id, line = next(iter(self._rotation.items()))
            _, ticket = line.popitem(last=False)
            if line:
                self._rotation.move_to_end(user_id)
            else:
                del self._rotation[user_id]
            self._count -= 1
            return ticket
        return None

    def pick_ready(self, now: float) -> bool:
        """Whether `pick(now)` would return a ticket (without taking it)."""
        top = self._front_top()
        return bool(self._rotation) or (top is not None and top.due(now))

    def next_due(self) -> float:
        """When the first front-lane ticket may start; the front lane must not be empty."""
        top = self._front_top()
        assert top is not None, "next_due on an empty front lane"
        return due_at(top)

    def drop(self, ticket: Ticket) -> bool:
        """Take a queued ticket out of the queue in O(1); False if it was not queued."""
        if self._in_front.get(ticket.id) is ticket:
            del self._in_front[ticket.id]  # its heap entry is skipped when it surfaces
            self._count -= 1
            return True
        line = self._rotation.get(ticket.user_id)
        if line is None or line.get(ticket.id) is not ticket:
            return False
        del line[ticket.id]
        if not line:
            del self._rotation[ticket.user_id]
        self._count -= 1
        return True

    def front_lane(self) -> list[Ticket]:
        """The front lane in order (a copy): 429-hit tickets, then retries by due time."""
        live = [entry for entry in self._front if self._in_front.get(entry[1]) is entry[2]]
        return [ticket for _, _, ticket in sorted(live, key=lambda entry: entry[:2])]

    def round_robin(self) -> list[Ticket]:
        """The rotation in rounds: every member's first ticket, then every second one…"""
        order: list[Ticket] = []
        queues = [list(line.values()) for line in self._rotation.values()]
        depth = 0
        while queues:
            order.extend(q[depth] for q in queues)
            depth += 1
            queues = [q for q in queues if len(q) > depth]
        return order

    def serve_order(self) -> list[Ticket]:
        """Every queued ticket: the front, then the rotation (not the timed serve order)."""
        return [*self.front_lane(), *self.round_robin()]
