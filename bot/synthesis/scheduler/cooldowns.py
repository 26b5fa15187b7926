"""Cooldowns: a member waits a while between messages, so one cannot fill everyone's calls.

The key allows a handful of calls a minute for the whole bot; without a pause between a
member's messages, one fast typist would take most of them. A cooldown starts with each new
message (not with later chunks of it, nor for narration), with the server's own length or the
default. Pure bookkeeping: callers pass the time in.
"""

from __future__ import annotations

__all__ = ["Cooldowns"]

#: Past this many members on record, finished cooldowns are forgotten on the next start.
FORGET_ABOVE = 1024


class Cooldowns:
    """Until when each member must wait before a new message is accepted."""

    def __init__(self) -> None:
        self._until: dict[int, float] = {}

    def remaining(self, user_id: int, now: float) -> float:
        """Seconds until `user_id` may submit again at `now` (0 if they may now)."""
        until = self._until.get(user_id)
        if until is None:
            return 0.0
        return max(0.0, until - now)

    def start(self, user_id: int, now: float, length: float) -> None:
        """`user_id` must wait `length` seconds from `now`."""
        if len(self._until) > FORGET_ABOVE:
            self._until = {user: until for user, until in self._until.items() if until > now}
        self._until[user_id] = now + length
