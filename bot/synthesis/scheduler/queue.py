"""The fair queue: who is served next, so one member's many requests cannot starve the others.

Members are served round-robin: each member's first waiting ticket, then each one's second…
and a member served moves to the back. Before the rotation comes a front lane: a ticket hit by
a 429 is served first once the pause ends (it was next already, and must not lose its place),
then tickets waiting out a retry back-off, each once it is due. The queue also counts each
member's active tickets (queued and running) for the per-member cap.

A plain data structure: no asyncio and no clock of its own; callers pass the time in.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict, deque

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
        self._rotation: OrderedDict[int, deque[Ticket]] = OrderedDict()
        #: Tickets served before the rotation: hit by a 429, or waiting to retry (sorted).
        self._front: list[Ticket] = []
        self._active_by_user: dict[int, int] = {}  # queued + running

    def __bool__(self) -> bool:
        """Anything queued (cheap, unlike `count`)."""
        return bool(self._front or self._rotation)

    def count(self) -> int:
        """How many tickets are queued, waiting retries included."""
        return len(self._front) + sum(len(q) for q in self._rotation.values())

    def active(self, user_id: int) -> int:
        """`user_id`'s tickets that are queued or running."""
        return self._active_by_user.get(user_id, 0)

    def add(self, ticket: Ticket) -> None:
        """Queue a new ticket at the back of its member's line; it becomes active."""
        self._rotation.setdefault(ticket.user_id, deque()).append(ticket)
        self._active_by_user[ticket.user_id] = self.active(ticket.user_id) + 1

    def push_front(self, ticket: Ticket) -> None:
        """Queue an active ticket again, in the front lane, by its due time (`due_at`)."""
        bisect.insort(self._front, ticket, key=front_key)

    def release(self, ticket: Ticket) -> None:
        """`ticket` has finished (or was withdrawn): it no longer counts as active."""
        left = self._active_by_user.get(ticket.user_id, 0) - 1
        if left > 0:
            self._active_by_user[ticket.user_id] = left
        else:
            self._active_by_user.pop(ticket.user_id, None)

    def pick(self, now: float) -> Ticket | None:
        """Take the next ticket to serve at `now`: a due front ticket, else the next member's.

        None when only retries are left and none is due yet (see `next_due`).
        """
        if self._front and self._front[0].due(now):
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

    def next_due(self) -> float:
        """When the first front-lane ticket may start; the front lane must not be empty."""
        return due_at(self._front[0])

    def drop(self, ticket: Ticket) -> bool:
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

    def front_lane(self) -> list[Ticket]:
        """The front lane in order (a copy): 429-hit tickets, then retries by due time."""
        return list(self._front)

    def round_robin(self) -> list[Ticket]:
        """The rotation in rounds: every member's first ticket, then every second one…"""
        order: list[Ticket] = []
        queues = [list(q) for q in self._rotation.values()]
        depth = 0
        while queues:
            order.extend(q[depth] for q in queues)
            depth += 1
            queues = [q for q in queues if len(q) > depth]
        return order

    def serve_order(self) -> list[Ticket]:
        """Every queued ticket: the front, then the rotation (not the timed serve order)."""
        return [*self._front, *self.round_robin()]
