"""The key's limit shared by every process, as a sliding window in Redis.

Each process keeps its own rate window too (`scheduler/window.py`), but only Redis sees every
start on the key. So before each start the scheduler asks `RedisLimiter.admit`, one Lua script
run atomically by Redis: drop starts older than the span, refuse while a shared 429 pause is
in force, and take a slot if fewer than the rate started in the span (otherwise answer how
long until the oldest counting start leaves it). Time is Redis's own (`TIME`), so processes on
machines with skewed clocks still share one window; waits go back as durations.

Every process asks with SEGMIND_RPM, and the script answers the one rate the cluster paces
at: that, or the lower limit the processes learned from 429s (`learned`: lowered by any
process, raised only by a probe from the level in force, `raised`). No process's own
figure counts on top, so each is admitted against the same rate. Refused by a full window,
a process also hears how many more of its starts it holds than an even share, so that one
ahead lets the others take the next slot (`Scheduler._turn_delay`).

Slots free together (a window's burst leaving at once, a restarted Redis) go to whoever asks
first, and the first would take them all. So a process that already holds an even share of
the rate among the processes that asked lately (`askers`, below), asking for a free slot,
is refused for one turn (`YIELD_TURN` of the interval between two starts): one whose turn it
is takes the slot meanwhile; if nobody does, it takes it on its next ask. Alone, or below an
even share, nobody waits.

Every answer also says how many processes asked within the last two spans (the asker
included; a set of one entry per process, so it costs a few O(log n) steps, no walk): a busy
process asks at least once a span, so each remembers how many shared the key lately, and
paces at its share of it if Redis stops answering (`scheduler/share.py`).

A process that dies holds nothing for long: its slots are starts the server counted too, so
they count for one span and then leave the window like anyone's, and every key carries an
expiry (the window a span after its last start, the askers two spans after the last ask, the
pause at its end, the learned rate after the longest hold a process may wait before probing
from it), so Redis holds nothing for a cluster that stopped.

Keys are named after a hash of the API key (never the key itself), in one Redis Cluster hash
slot (`{...}`) so the script may touch them all: two bots on two keys share one Redis safely.
Every key the bot writes starts with `key_prefix` (`REDIS_KEY_PREFIX`, then that hash), so two
bots on one Redis, even on one API key, are kept apart by giving them different prefixes.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
from typing import Any

from redis.asyncio import Redis

from bot.config import DEFAULT_NAMESPACE, namespace_problem
from bot.synthesis.cluster.link import LUA_NOW, RedisLink, to_ms
from bot.synthesis.scheduler.gate import Admission

__all__ = ["YIELD_TURN", "RedisLimiter", "key_prefix"]

#: A process that holds an even share of the rate, asking for a free slot while another
#: process asked lately, waits this share of the interval between two starts for it first.
YIELD_TURN = 0.1

#: KEYS: starts (zset), pause, learned, askers (zset: owner -> when it last asked). ARGV: span
#: ms, rpm, slot id, owner (the slot id's prefix, one per process), 1 to take a slot it just
#: let go by (else 0), the turn as a share of the interval between two starts. Returns
#: {admitted 0/1, wait ms, rpm in force, paused 0/1, owners that asked within two spans (the
#: asker included)}, and when the window is full also the owner's starts in it, how many owners
#: hold any, and the starts in it (a walk of at most the rate's few entries, only when refused,
#: or when a slot is free but the asker already holds an even share of the rate: then it is
#: refused for one turn, with no more).
_ADMIT = (
    LUA_NOW
    + """
local span = tonumber(ARGV[1])
local rpm = tonumber(ARGV[2])
redis.call('ZADD', KEYS[4], now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - 2 * span)
redis.call('PEXPIRE', KEYS[4], 2 * span)
local askers = redis.call('ZCARD', KEYS[4])
local learned = tonumber(redis.call('GET', KEYS[3]) or '0')
if learned > 0 and learned < rpm then rpm = learned end
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then return {0, paused - now, rpm, 1, askers} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - span)
local n = redis.call('ZCARD', KEYS[1])
local function walk()
  local mine, owners, seen = 0, 0, {}
  for _, slot in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local owner = string.match(slot, '^(.*)%-%d+$') or slot
    if owner == ARGV[4] then mine = mine + 1 end
    if not seen[owner] then
      seen[owner] = true
      owners = owners + 1
    end
  end
  return mine, owners
end
if n < rpm then
  if askers > 1 and ARGV[5] == '0' and n > 0 then
    local mine = walk()
    if mine * askers >= rpm then
      return {0, math.max(1, math.floor(span / rpm * tonumber(ARGV[6]))), rpm, 0, askers}
    end
  end
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], span)
  return {1, 0, rpm, 0, askers}
end
local oldest = redis.call('ZRANGE', KEYS[1], n - rpm, n - rpm, 'WITHSCORES')
local mine, owners = walk()
return {0, math.max(1, tonumber(oldest[2]) + span - now), rpm, 0, askers, mine, owners, n}
"""
)

#: KEYS: pause. ARGV: ms. Extends the pause to now + ms, never shortens it.
_PAUSE = (
    LUA_NOW
    + """
local ms = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + ms > current then redis.call('SET', KEYS[1], now + ms, 'PX', ms) end
return 1
"""
)

#: KEYS: learned. ARGV: rpm, hold ms. Lowers the shared rate (never raises it) for the hold.
_LEARNED = """
local rpm = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current == 0 or rpm < current then redis.call('SET', KEYS[1], rpm, 'PX', ARGV[2]) end
return 1
"""

#: KEYS: learned. ARGV: was, rpm, hold ms. Raises the shared rate from `was` only: a decrease
#: (or another probe) since then wins.
_RAISED = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


def key_prefix(api_key: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The start of every Redis key the bot writes for one API key: the bot's namespace
    (`REDIS_KEY_PREFIX`), then a hash of the key (never the key) as one hash slot."""
    problem = namespace_problem(namespace)
    if problem:
        raise ValueError(f"REDIS_KEY_PREFIX {problem}")
    digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return f"{namespace}:{{{digest}}}:"


class RedisLimiter:
    """The scheduler's `Gate` on Redis: see the module docstring. Each round trip is one
    `RedisLink.run`: within `REDIS_BUDGET`, and refused at once while Redis is down."""

    def __init__(
        self,
        redis: Redis | RedisLink,
        *,
        api_key: str,
        span: float,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        self._link = redis if isinstance(redis, RedisLink) else RedisLink(redis)
        self._redis = self._link.redis
        prefix = key_prefix(api_key, namespace)
        self._starts = prefix + "starts"
        self._pause = prefix + "pause"
        self._learned = prefix + "learned"
        self._askers = prefix + "askers"
        self._span_ms = to_ms(span)
        self._ids = itertools.count(1)
        self._let_go = False  # the last answer was a turn let go (see the module docstring)
        self._me = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._admit = self._redis.register_script(_ADMIT)
        self._pause_script = self._redis.register_script(_PAUSE)
        self._learned_script = self._redis.register_script(_LEARNED)
        self._raised_script = self._redis.register_script(_RAISED)

    async def admit(self, rpm: int) -> Admission:
        slot = f"{self._me}-{next(self._ids)}"
        answer: Any = await self._link.run(
            lambda: self._admit(
                keys=[self._starts, self._pause, self._learned, self._askers],
                args=[self._span_ms, rpm, slot, self._me, int(self._let_go), YIELD_TURN],
            )
        )
        admitted, wait_ms, in_force, paused, sharers, *share = (int(value) for value in answer)
        # Let a slot go by for its turn: the next ask takes one if one is still free.
        self._let_go = not admitted and not paused and not share
        if admitted:
            return Admission(slot, rpm=in_force, sharers=sharers)
        ahead = 0.0
        if share:  # the window is full: how far past an even share this process is
            mine, owners, count = share
            ahead = max(0.0, mine - count / max(1, owners))
        wait = wait_ms / 1000
        return Admission(
            None, wait=wait, rpm=in_force, paused=bool(paused), ahead=ahead, sharers=sharers
        )

    async def give_back(self, slot: str) -> None:
        await self._link.run(lambda: self._redis.zrem(self._starts, slot))

    async def pause(self, seconds: float) -> None:
        await self._link.run(lambda: self._pause_script(keys=[self._pause], args=[to_ms(seconds)]))

    async def learned(self, rpm: int, hold: float) -> None:
        await self._link.run(
            lambda: self._learned_script(keys=[self._learned], args=[rpm, to_ms(hold)])
        )

    async def raised(self, was: int, rpm: int, hold: float) -> None:
        await self._link.run(
            lambda: self._raised_script(keys=[self._learned], args=[was, rpm, to_ms(hold)])
        )

    async def in_window(self) -> int:
        """Starts counted in the shared window now (for tests and benches)."""
        return int(await self._redis.zcard(self._starts))
