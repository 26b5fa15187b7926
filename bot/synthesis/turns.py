"""The protocol a member's cooldown and waiting cap across processes is asked through.

`SpeechSource` (`stream.py`) asks it before each call it queues, the scheduler's own checks
after; the Redis side lives in `bot.synthesis.cluster.members`, which this module never
imports: without REDIS_URL nothing here touches Redis.
"""

from __future__ import annotations

from typing import Protocol

from bot.errors import BotError
from bot.speech.access import Requester
from bot.synthesis.scheduler import Ticket

__all__ = ["MemberTurns", "Turn"]


class Turn(Protocol):
    """One call counted against its member across processes."""

    def bind(self, ticket: Ticket) -> None:
        """The call was queued: it counts until `ticket` ends."""
        ...

    async def give_back(self) -> None:
        """The call was not queued after all: as if never counted (never raises)."""
        ...


class MemberTurns(Protocol):
    """Cooldowns and waiting caps for every process on the key. Coordination trouble is its
    own to absorb: at worst it refuses nothing, and each process's scheduler decides alone."""

    async def take(
        self, requester: Requester, *, follow_up: bool = False, cooldown_only: bool = False
    ) -> Turn:
        """Count a call about to be queued, or raise `CooldownError` / `QueueFullError`;
        `cooldown_only`: check and start the member's cooldown, counting nothing."""
        ...

    async def refusal(self, requester: Requester) -> BotError | None:
        """What `take` would refuse for a new message now, changing nothing."""
        ...
