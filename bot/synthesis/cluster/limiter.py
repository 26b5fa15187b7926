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

Every answer but a pause's also says how many processes hold starts in the window (the
asker counted), a walk of at most the rate's entries: each process remembers how many shared
the key lately, and paces at its share of it if Redis stops answering (`scheduler/share.py`).

A process that dies holds nothing for long: its slots are starts the server counted too, so
they count for one span and then leave the window like anyone's, and every key carries an
expiry (the window a span after its last start, the pause at its end, the learned rate after
the longest hold a process may wait before probing from it), so Redis holds nothing for a
cluster that stopped.

Keys are named after a hash of the API key (never the key itself), in one Redis Cluster hash
slot (`{...}`) so the script may touch them all: two bots on two keys share one Redis safely.
Every key the bot writes starts with `key_prefix` (`REDIS_KEY_PREFIX`, then that hash), so two
bots on one Redis, even on one API key, are kept apart by giving them different prefixes.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import secrets
from typing import Any

from redis.asyncio import Redis

from bot.config import DEFAULT_NAMESPACE, namespace_problem
from bot.synthesis.cluster.link import RedisLink
from bot.synthesis.scheduler.gate import Admission

__all__ = ["DEFAULT_NAMESPACE", "RedisLimiter", "key_prefix"]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: KEYS: starts (zset), pause, learned. ARGV: span ms, rpm, slot id, owner (the slot id's
#: prefix, one per process). Returns {admitted 0/1, wait ms, rpm in force, paused 0/1}, and
#: unless paused also the owner's starts in the window, how many owners hold any, and the
#: starts in it (a walk of the window's entries, at most SEGMIND_RPM of them).
_ADMIT = (
    _NOW
    + """
local span = tonumber(ARGV[1])
local rpm = tonumber(ARGV[2])
local learned = tonumber(redis.call('GET', KEYS[3]) or '0')
if learned > 0 and learned < rpm then rpm = learned end
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then return {0, paused - now, rpm, 1} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - span)
local n = redis.call('ZCARD', KEYS[1])
local admitted, wait = 0, 0
if n < rpm then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], span)
  admitted, n = 1, n + 1
else
  local oldest = redis.call('ZRANGE', KEYS[1], n - rpm, n - rpm, 'WITHSCORES')
  wait = math.max(1, tonumber(oldest[2]) + span - now)
end
local mine, owners, seen = 0, 0, {}
for _, slot in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local owner = string.match(slot, '^(.*)%-%d+$') or slot
  if owner == ARGV[4] then mine = mine + 1 end
  if not seen[owner] then
    seen[owner] = true
    owners = owners + 1
  end
end
return {admitted, wait, rpm, 0, mine, owners, n}
"""
)

#: KEYS: pause. ARGV: ms. Extends the pause to now + ms, never shortens it.
_PAUSE = (
    _NOW
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


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


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
        self._span_ms = _ms(span)
        self._ids = itertools.count(1)
        self._me = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._admit = self._redis.register_script(_ADMIT)
        self._pause_script = self._redis.register_script(_PAUSE)
        self._learned_script = self._redis.register_script(_LEARNED)
        self._raised_script = self._redis.register_script(_RAISED)

    async def admit(self, rpm: int) -> Admission:
        slot = f"{self._me}-{next(self._ids)}"
        answer: Any = await self._link.run(
            lambda: self._admit(
                keys=[self._starts, self._pause, self._learned],
                args=[self._span_ms, rpm, slot, self._me],
            )
        )
        admitted, wait_ms, in_force, paused, *share = (int(value) for value in answer)
        if not share:  # refused by a pause, before the window was looked at
            return Admission(None, wait=wait_ms / 1000, rpm=in_force, paused=bool(paused))
        mine, owners, count = share
        sharers = owners if mine else owners + 1  # this process wants the key too
        if admitted:
            return Admission(slot, rpm=in_force, sharers=sharers)
        # The window is full: how far past an even share this process is.
        ahead = max(0.0, mine - count / max(1, owners))
        return Admission(None, wait=wait_ms / 1000, rpm=in_force, ahead=ahead, sharers=sharers)

    async def give_back(self, slot: str) -> None:
        await self._link.run(lambda: self._redis.zrem(self._starts, slot))

    async def pause(self, seconds: float) -> None:
        await self._link.run(lambda: self._pause_script(keys=[self._pause], args=[_ms(seconds)]))

    async def learned(self, rpm: int, hold: float) -> None:
        await self._link.run(
            lambda: self._learned_script(keys=[self._learned], args=[rpm, _ms(hold)])
        )

    async def raised(self, was: int, rpm: int, hold: float) -> None:
        await self._link.run(
            lambda: self._raised_script(keys=[self._learned], args=[was, rpm, _ms(hold)])
        )

    async def in_window(self) -> int:
        """Starts counted in the shared window now (for tests and benches)."""
        return int(await self._redis.zcard(self._starts))
