"""The clips every process on the key shares, stored once in Redis within the bot's own budget.

Redis's `maxmemory` is no bound to lean on: its eviction picks among every key, so under
memory pressure from clips it would drop the key's shared rate window, its 429 pause or a
claim just as readily (under `volatile-lru` an idle window was the first to go). So the clip
tier keeps its own books and never grows past `CACHE_SHARED_MB`:

* every clip is stored by one Lua script, atomically with its books: a sorted set of clips by
  the time they were stored (Redis's clock) and a hash of what each costs, with their total;
* before it stores one, the script takes off the books the clips whose TTL ended, then
  deletes the oldest clips until the new one fits; a clip over a sixteenth of the budget is
  never sent (it would flush a crowd of small ones, and its bytes would travel for nothing);
* the coordination keys (window, pause, learned rate, claims) are never touched by it.

The clips it evicts are named from the prefix inside the script: every key of one API key
shares a Redis Cluster hash slot (`{...}` in `key_prefix`), so this stays in one slot.

A clip's bytes go up once. The process that made it stores it *as* the answer for processes
waiting for the same call (`flights.py` leaves them a pointer to it), and remembers briefly
which clips it stored or received, by a fingerprint of their bytes, so that putting one into
its cache right after sends nothing again (a `fresh` take, different bytes, is still sent).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from bot.audio import Audio, AudioFormat
from bot.synthesis.cluster.link import RedisLink, safe_url

__all__ = [
    "CLIP_OVERHEAD",
    "SharedClips",
    "check_eviction",
    "clip_key",
    "decode_audio",
    "encode_audio",
    "eviction_problem",
]

log = logging.getLogger(__name__)

#: Bytes a clip costs Redis beyond its value (its key, and its entries in the books).
CLIP_OVERHEAD = 512
#: The largest clip stored is this fraction of the budget.
LARGEST_SHARE = 16
#: Clips remembered as already in Redis (stored or received here): only the put that follows
#: a store or a delivery needs it, so a few are plenty.
_REMEMBERED = 1024

#: Lua: `forget` takes a clip off the books, returning what it cost; `store_clip` stores
#: `value` as `member`'s clip, deleting the oldest clips until it fits `budget`, and returns
#: how many it deleted. Shared with `flights.py`, which stores a clip as a call's answer.
STORE_CLIP = """
local function forget(index, sizes, member)
  local cost = tonumber(redis.call('HGET', sizes, member) or '0')
  redis.call('HDEL', sizes, member)
  redis.call('ZREM', index, member)
  return cost
end

local function store_clip(clip, index, sizes, total, clip_prefix, member, value, ttl, budget, cost)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local held = tonumber(redis.call('GET', total) or '0')
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', now - ttl)) do
    held = held - forget(index, sizes, gone)
  end
  if redis.call('HEXISTS', sizes, member) == 1 then
    held = held - forget(index, sizes, member)
  end
  local evicted = 0
  while held + cost > budget do
    local oldest = redis.call('ZRANGE', index, 0, 0)[1]
    if not oldest then
      held = 0
      break
    end
    held = held - forget(index, sizes, oldest)
    redis.call('DEL', clip_prefix .. oldest)
    evicted = evicted + 1
  end
  if held < 0 then held = 0 end
  redis.call('SET', clip, value, 'PX', ttl)
  redis.call('ZADD', index, now, member)
  redis.call('HSET', sizes, member, cost)
  redis.call('SET', total, held + cost, 'PX', ttl)
  redis.call('PEXPIRE', index, ttl)
  redis.call('PEXPIRE', sizes, ttl)
  return evicted
end
"""

#: KEYS: clip, index, sizes, total. ARGV: clip prefix, member, value, ttl ms, budget, cost.
_STORE = (
    STORE_CLIP
    + """
return store_clip(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3],
  tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))
"""
)

#: Evicting policies: anything but `noeviction` may drop a coordination key when Redis is full.
_NOT_EVICTING = "noeviction"


def clip_key(prefix: str, key: str) -> str:
    """The Redis key of one clip (also where a flight's answer points)."""
    return prefix + "clip:" + key


def encode_audio(audio: Audio) -> bytes:
    """One value for Redis: a JSON line of the audio's facts, then its bytes."""
    facts = {
        "format": audio.format.value,
        "sample_rate": audio.sample_rate,
        "channels": audio.channels,
        "duration": audio.duration,
    }
    return json.dumps(facts).encode() + b"\n" + audio.data


def decode_audio(value: bytes | str | None) -> Audio | None:
    """The audio `encode_audio` stored, or None for a value that is not one (or none)."""
    if not isinstance(value, bytes):  # a client decoding responses is misconfigured
        return None
    head, sep, data = value.partition(b"\n")
    if not sep:
        return None
    try:
        facts = json.loads(head)
        return Audio(
            data,
            AudioFormat(facts["format"]),
            int(facts["sample_rate"]),
            int(facts["channels"]),
            float(facts["duration"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def _fingerprint(audio: Audio) -> bytes:
    return hashlib.blake2b(audio.data, digest_size=16).digest()


class SharedClips:
    """The clip tier in Redis, bounded by `budget` bytes of its own (see the module).

    Round trips go through `link` (within its budget, refused at once while Redis is down);
    errors propagate to the caller, which treats them as a miss.
    """

    def __init__(self, redis: Redis | RedisLink, *, prefix: str, ttl: float, budget: int) -> None:
        if budget <= 0:
            raise ValueError("a shared clip tier needs a budget (CACHE_SHARED_MB > 0)")
        self.link = redis if isinstance(redis, RedisLink) else RedisLink(redis)
        self.prefix = prefix
        self.budget = budget
        #: The largest clip (encoded, with its overhead) stored; larger ones stay local.
        self.largest = budget // LARGEST_SHARE
        self.ttl_ms = max(1, int(ttl * 1000))
        self.index_key = prefix + "clips"
        self.sizes_key = prefix + "clipsizes"
        self.total_key = prefix + "clipbytes"
        self._store_script = self.link.redis.register_script(_STORE)
        self._remembered: OrderedDict[str, bytes] = OrderedDict()
        #: Clips this process deleted to keep the tier within its budget.
        self.evicted = 0

    def clip_key(self, key: str) -> str:
        return clip_key(self.prefix, key)

    def cost(self, value: bytes) -> int:
        """What a stored value counts against the budget."""
        return len(value) + CLIP_OVERHEAD

    def fits(self, value: bytes) -> bool:
        return self.cost(value) <= self.largest

    def store_keys(self, key: str) -> list[str]:
        """KEYS for `STORE_CLIP`'s `store_clip`, in its order."""
        return [self.clip_key(key), self.index_key, self.sizes_key, self.total_key]

    def store_args(self, key: str, value: bytes) -> list[Any]:
        """ARGV for `store_clip` after its keys: prefix, member, value, ttl, budget, cost."""
        return [self.clip_key(""), key, value, self.ttl_ms, self.budget, self.cost(value)]

    async def fetch(self, key: str) -> Audio | None:
        redis = self.link.redis
        audio = decode_audio(await self.link.run(lambda: redis.get(self.clip_key(key))))
        if audio is not None:
            self.remember(key, audio)
        return audio

    async def store(self, key: str, audio: Audio) -> bool:
        """Send `audio` up unless it is already there (stored or received here) or too big
        for the budget; True if it was sent."""
        if self.holds(key, audio):
            return False
        value = encode_audio(audio)
        if not self.fits(value):
            return False
        await self.link.preload(self._store_script)
        evicted: Any = await self.link.run(
            lambda: self._store_script(keys=self.store_keys(key), args=self.store_args(key, value))
        )
        self.evicted += int(evicted)
        self.remember(key, audio)
        return True

    def remember(self, key: str, audio: Audio) -> None:
        """`audio` is in Redis under `key` (this process stored it, or read it from there)."""
        self._remembered[key] = _fingerprint(audio)
        self._remembered.move_to_end(key)
        while len(self._remembered) > _REMEMBERED:
            self._remembered.popitem(last=False)

    def holds(self, key: str, audio: Audio) -> bool:
        """Whether these very bytes are known to be in Redis under `key` already."""
        known = self._remembered.get(key)
        return known is not None and known == _fingerprint(audio)

    async def held(self) -> int:
        """Bytes the books say the tier holds now (tests and benches)."""
        return int(await self.link.redis.get(self.total_key) or 0)


async def check_eviction(link: RedisLink, url: str, budget: int) -> str | None:
    """Warn once (returning the warning) if Redis may evict the bot's coordination keys
    (`eviction_problem`); a Redis that cannot be reached now is not asked."""
    if link.down:
        return None
    try:
        problem = await link.run(lambda: eviction_problem(link.redis, budget))
    except (RedisError, OSError, TimeoutError) as exc:
        log.debug("Could not read Redis's eviction settings: %s", exc)
        return None
    if problem is None:
        return None
    warning = f"Redis at {safe_url(url)} {problem}"
    log.warning("%s", warning)
    return warning


async def eviction_problem(redis: Redis, budget: int) -> str | None:
    """What is wrong with this Redis for clips within `budget` beside the coordination keys,
    phrased to follow its name; None if nothing (or if it will not tell).

    The bot keeps its clips within `budget`, but a Redis whose `maxmemory` is set with an
    evicting policy still drops keys when anything fills it, coordination keys included; one
    whose `maxmemory` cannot hold the budget fills up. A Redis that refuses `CONFIG GET`
    (managed services, restricted users) is not second-guessed.
    """
    try:
        policy_reply: Any = await redis.config_get("maxmemory-policy")
        memory_reply: Any = await redis.config_get("maxmemory")
    except ResponseError as exc:
        log.debug("Redis will not tell its eviction settings: %s", exc)
        return None
    policy = _config_value(policy_reply, "maxmemory-policy")
    maxmemory = int(_config_value(memory_reply, "maxmemory") or 0)
    if not policy or maxmemory <= 0:
        return None  # no maxmemory: Redis never evicts
    problems = []
    if policy != _NOT_EVICTING:
        problems.append(
            f"evicts keys when full (maxmemory-policy {policy}), and could drop the key's "
            "shared rate window, its 429 pause or a claim: set maxmemory-policy noeviction "
            "(the bot keeps its own clips within CACHE_SHARED_MB)"
        )
    if maxmemory < budget * 3 // 2:
        problems.append(
            f"has a maxmemory ({maxmemory / 2**20:.0f} MiB) too small for CACHE_SHARED_MB "
            f"({budget / 2**20:.0f} MiB of clips) and the rest: raise maxmemory to at least "
            "1.5 times CACHE_SHARED_MB, or lower CACHE_SHARED_MB"
        )
    return "; and ".join(problems) or None


def _config_value(reply: Any, name: str) -> str:
    if not isinstance(reply, dict):
        return ""
    value = reply.get(name, reply.get(name.encode(), b""))
    return value.decode() if isinstance(value, bytes) else str(value)
