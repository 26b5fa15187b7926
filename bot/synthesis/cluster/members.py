"""A member's cooldown and waiting cap across every process of a cluster.

Each scheduler keeps both for its own process (`scheduler/cooldowns.py`, and the member's
active tickets in `queue.py`). A member who writes in two servers run by two processes would
get a cooldown and a cap from each: twice the calls the operator meant to allow. With Redis,
before a call is queued, one script does what the scheduler does, for the whole cluster:

* a new message (not a later chunk of one) is refused while the member's cooldown runs, and
  starts it (`SET PX` the cooldown's length, on Redis's clock);
* a new capped message is refused while the member has MAX_WAITING_PER_USER calls queued or
  running on any process; each queued call is an entry of the member's set until its ticket
  ends (or, for a process that died, until its deadline passes).

The scheduler's own checks still run after (a refusal there gives the turn back). Narration
and the terminal (no cooldown, no cap) never ask Redis. Redis unreachable, or slower than
`REDIS_BUDGET`: the process decides alone, as without Redis (logged once per outage); a
member is never refused for the coordination.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
from typing import Any

from bot.errors import BotError, CooldownError, QueueFullError
from bot.speech.access import Requester
from bot.synthesis.cluster.link import LUA_NOW, OutageNotice, RedisLink, to_ms
from bot.synthesis.scheduler import Ticket

__all__ = ["PEEK_BUDGET", "ClusterTurn", "RedisTurns"]

log = logging.getLogger(__name__)

#: Seconds /speak waits for the cluster's refusal before deferring (Discord's 3 s run
#: meanwhile); past it the check is left to the queueing itself, after the deferral.
PEEK_BUDGET = 0.5

#: KEYS: cooldown, waiting (zset). ARGV: token, cooldown ms (0: none), cap (0: none), entry
#: lifetime ms, new message (1) or later chunk (0), counted as waiting (1) or not (0).
#: Returns {0} (taken), {1, ms left} (cooling down) or {2} (the cap is reached).
_TAKE = (
    LUA_NOW
    + """
local cooldown = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local life = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if ARGV[5] == '1' then
  if cooldown > 0 then
    local left = redis.call('PTTL', KEYS[1])
    if left > 0 then return {1, left} end
  end
  if cap > 0 and redis.call('ZCARD', KEYS[2]) >= cap then return {2} end
  if cooldown > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', cooldown) end
end
if ARGV[6] == '1' then
  redis.call('ZADD', KEYS[2], now + life, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], life)
end
return {0}
"""
)

#: KEYS: cooldown, waiting. ARGV: token, also the cooldown (1/0). A turn not used after all.
_GIVE_BACK = """
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[2] == '1' and redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

#: KEYS: cooldown, waiting. ARGV: cap (0: none). Read only: {ms of cooldown left, waiting}.
_PEEK = (
    LUA_NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return {math.max(0, redis.call('PTTL', KEYS[1])), redis.call('ZCARD', KEYS[2])}
"""
)


class ClusterTurn:
    """One call's place in the member's cluster-wide count: `bind` it to the ticket that makes
    the call (it ends with the ticket), or `give_back` if the call was not queued after all."""

    def __init__(self, turns: RedisTurns | None, user_id: int, token: str, cooled: bool) -> None:
        self._turns = turns
        self._user_id = user_id
        self._token = token
        self._cooled = cooled

    def bind(self, ticket: Ticket) -> None:
        turns = self._turns
        if turns is not None:
            ticket.when_done(lambda _: turns._later(turns._end(self._user_id, self._token, False)))

    async def give_back(self) -> None:
        if self._turns is not None:
            await self._turns._end(self._user_id, self._token, self._cooled)


#: No turn was taken in Redis (no cooldown nor cap applies, or Redis is down).
_NO_TURN = ClusterTurn(None, 0, "", False)


class RedisTurns:
    """The cluster-wide cooldowns and waiting caps (see the module). `cooldown` and `cap` are
    USER_COOLDOWN and MAX_WAITING_PER_USER; `life` bounds how long a dead process's calls
    still count (a ticket's deadline and one call's timeout)."""

    def __init__(
        self, link: RedisLink, *, prefix: str, cooldown: float, cap: int, life: float
    ) -> None:
        self._link = link
        self._prefix = prefix
        self.cooldown = cooldown
        self.cap = cap
        self._life_ms = to_ms(life)
        self._me = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._ids = itertools.count(1)
        redis = link.redis
        self._take = redis.register_script(_TAKE)
        self._give_back = redis.register_script(_GIVE_BACK)
        self._peek = redis.register_script(_PEEK)
        self._notice = OutageNotice(
            log,
            lost="Redis is unreachable, so cooldowns and waiting caps are this process's own "
            "until it is back: %s",
            back="Redis is back: cooldowns and waiting caps count every process again",
        )
        self._chores: set[asyncio.Task[None]] = set()

    def _keys(self, user_id: int) -> list[str]:
        return [f"{self._prefix}cooldown:{user_id}", f"{self._prefix}waiting:{user_id}"]

    def _length(self, requester: Requester) -> float:
        return self.cooldown if requester.cooldown is None else requester.cooldown

    def applies(self, requester: Requester) -> bool:
        """Whether Redis has anything to say about this requester's calls."""
        return requester.capped or self._length(requester) > 0

    async def take(
        self, requester: Requester, *, follow_up: bool = False, cooldown_only: bool = False
    ) -> ClusterTurn:
        """Count a call about to be queued for the member, or raise `CooldownError` or
        `QueueFullError` as the scheduler would, for the whole cluster. `cooldown_only`: a
        message accepted now whose calls are queued later (a Stage's audience, as the
        scheduler's `take_turn`): its cooldown is checked and started, nothing is counted."""
        if cooldown_only and self._length(requester) <= 0:
            return _NO_TURN
        if not self.applies(requester):
            return _NO_TURN
        new = not follow_up
        cooldown = self._length(requester) if new else 0.0
        cap = self.cap if new and requester.capped and not cooldown_only else 0
        token = f"{self._me}-{next(self._ids)}"
        keys = self._keys(requester.user_id)
        args: list[str | int] = [
            token,
            to_ms(cooldown) if cooldown > 0 else 0,
            cap,
            self._life_ms,
            int(new),
            int(not cooldown_only),
        ]
        try:
            answer: Any = await self._link.run(lambda: self._take(keys=keys, args=args))
        except asyncio.CancelledError:
            # The script may have run: a turn taken for nobody would count until its end.
            self._later(self._end(requester.user_id, token, cooldown > 0))
            raise
        except Exception as exc:
            self._notice.lost(exc)
            return _NO_TURN
        self._notice.back()
        outcome = int(answer[0])
        if outcome == 1:
            raise CooldownError(int(answer[1]) / 1000)
        if outcome == 2:
            raise QueueFullError(per_user=True, limit=self.cap)
        return ClusterTurn(self, requester.user_id, token, cooldown > 0)

    async def refusal(self, requester: Requester) -> BotError | None:
        """What `take` would refuse for a new message now, changing nothing (for /speak to
        know before it defers whether the refusal can still be private)."""
        if not self.applies(requester):
            return None
        keys = self._keys(requester.user_id)
        try:
            async with asyncio.timeout(PEEK_BUDGET):
                answer: Any = await self._link.run(lambda: self._peek(keys=keys, args=[]))
        except TimeoutError:  # slow, not (yet) down: asked again when the call is queued
            return None
        except Exception as exc:
            self._notice.lost(exc)
            return None
        self._notice.back()
        left, waiting = int(answer[0]), int(answer[1])
        if self._length(requester) > 0 and left > 0:
            return CooldownError(left / 1000)
        if requester.capped and waiting >= self.cap:
            return QueueFullError(per_user=True, limit=self.cap)
        return None

    async def _end(self, user_id: int, token: str, cooled: bool) -> None:
        keys = self._keys(user_id)
        try:
            await self._link.run(lambda: self._give_back(keys=keys, args=[token, int(cooled)]))
        except Exception as exc:  # it leaves the count at its deadline anyway
            log.debug("Could not end a member's turn in Redis: %s", exc)

    def _later(self, what: Any) -> None:
        task = asyncio.get_running_loop().create_task(what, name="member-turn")
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def settle(self) -> None:
        """Wait for the turns being ended in Redis (shutdown, tests)."""
        while self._chores:
            await asyncio.gather(*list(self._chores), return_exceptions=True)
