"""One process per shard: a lease in Redis for each shard a process runs (`SHARD_IDS`).

Two processes given the same SHARD_IDS (a copied service, a second `docker run`) would both
connect those shards to Discord with the same token: every message narrated twice, every
command answered by whichever is faster. So at start, before logging in, a process with
`REDIS_URL` and `SHARD_IDS` takes a lease per shard (`SET NX PX`, all or none in one script),
renews it every third of its lifetime while it runs, and gives it back on a clean shutdown.

* A shard whose lease another process renews: this process refuses to start, with one line
  naming the shard(s) and who holds them (a configuration error, exit code 2).
* A lease nobody renews any more (its process was killed, `SIGKILL`, a lost machine) expires
  within `LEASE_TTL`: a process restarted at once waits up to that long for it, then starts.
  Each lease's value changes at every renewal, so a live holder is told apart from a stale
  lease at its first renewal, without waiting the whole lifetime.
* Redis that cannot be reached at start: the process starts anyway (logged; speech never
  depends on Redis) and takes its leases once Redis answers. A lease lost meanwhile to
  another process is logged as an error: two processes may then run that shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis.asyncio import Redis

from bot.config import DEFAULT_NAMESPACE, Settings
from bot.errors import SettingsError
from bot.synthesis.cluster.limiter import key_prefix
from bot.synthesis.cluster.link import REDIS_BUDGET, OutageNotice, safe_url
from bot.synthesis.cluster.names import cluster_secret

__all__ = ["LEASE_TTL", "ShardLeases", "hold_shards"]

log = logging.getLogger(__name__)

#: Seconds a lease outlives the last renewal of its process (renewed every third of it).
LEASE_TTL = 30.0

#: KEYS: the shards' leases. ARGV: owner, ttl ms. Takes all (returns {}) or none: then
#: returns, for each lease another owner holds, its index (1-based) and its value.
_ACQUIRE = """
local held = {}
for i = 1, #KEYS do
  local value = redis.call('GET', KEYS[i])
  if value and string.sub(value, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then
    table.insert(held, i)
    table.insert(held, value)
  end
end
if #held > 0 then return held end
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[1] .. ' 0', 'PX', ARGV[2]) end
return held
"""

#: KEYS: the shards' leases. ARGV: owner, ttl ms, renewal number. Renews (or takes again,
#: once expired) every lease not held by another owner; returns the indexes of those that are.
_RENEW = """
local lost = {}
for i = 1, #KEYS do
  local value = redis.call('GET', KEYS[i])
  if value and string.sub(value, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then
    table.insert(lost, i)
  else
    redis.call('SET', KEYS[i], ARGV[1] .. ' ' .. ARGV[3], 'PX', ARGV[2])
  end
end
return lost
"""

#: KEYS: the shards' leases. ARGV: owner. Deletes those still this owner's.
_RELEASE = """
for i = 1, #KEYS do
  local value = redis.call('GET', KEYS[i])
  if value and string.sub(value, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
    redis.call('DEL', KEYS[i])
  end
end
return 1
"""


class ShardLeases:
    """This process's leases on `shard_ids` (see the module)."""

    def __init__(
        self,
        redis: Redis,
        shard_ids: Sequence[int],
        *,
        secret: str,
        namespace: str = DEFAULT_NAMESPACE,
        ttl: float = LEASE_TTL,
        budget: float = REDIS_BUDGET,
    ) -> None:
        self.redis = redis
        self.shard_ids = tuple(shard_ids)
        self.ttl = ttl
        self.budget = budget
        prefix = key_prefix(secret, f"{namespace}:shards")
        self._keys = [f"{prefix}{shard}" for shard in self.shard_ids]
        #: Who holds them, as another process's refusal shows it: host, pid and a nonce.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._ms = max(1, int(ttl * 1000))
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew_script = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._renewals = 0
        self._renewer: asyncio.Task[None] | None = None
        self._notice = OutageNotice(
            log,
            lost=f"Redis cannot be reached (%s): running shard(s) {_shards(self.shard_ids)} "
            "without checking that no other process runs them; the leases are taken once "
            "Redis answers",
            back="Redis answers again: the shard leases are renewed",
        )
        self._lost: set[int] = set()

    async def take(self, *, poll: float | None = None) -> None:
        """Take every lease, waiting up to `ttl` for stale ones to expire; raise
        `SettingsError` if another process renews one. Redis unreachable: start anyway."""
        poll = poll if poll is not None else min(1.0, self.ttl / 10)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ttl + poll
        seen: dict[int, str] = {}
        told = False
        while True:
            try:
                async with asyncio.timeout(self.budget):
                    answer: Any = await self._acquire(keys=self._keys, args=[self.owner, self._ms])
            except Exception as exc:
                self._notice.lost(exc)
                break
            held = {
                self.shard_ids[int(answer[i]) - 1]: _text(answer[i + 1])
                for i in range(0, len(answer), 2)
            }
            if not held:
                log.info("Holding the lease on shard(s) %s in Redis", _shards(self.shard_ids))
                break
            renewed = any(shard in seen and seen[shard] != value for shard, value in held.items())
            if renewed or loop.time() >= deadline:
                raise SettingsError(_refusal(held))
            for shard, value in held.items():
                seen.setdefault(shard, value)
            if not told:
                told = True
                log.warning(
                    "Shard(s) %s are leased to %s: waiting up to %.0f s for the lease to expire "
                    "(a process that was killed), or to see it renewed (a process still running)",
                    _shards(held),
                    _holders(held),
                    self.ttl,
                )
            await asyncio.sleep(poll)
        self._renewer = loop.create_task(self._renew_forever(), name="shard-leases")

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            await self.renew()

    async def renew(self) -> None:
        """Extend every lease (take again those that expired meanwhile); never raises."""
        self._renewals += 1
        try:
            async with asyncio.timeout(self.budget):
                lost: Any = await self._renew_script(
                    keys=self._keys, args=[self.owner, self._ms, self._renewals]
                )
        except Exception as exc:
            self._notice.lost(exc)
            return
        self._notice.back()
        shards = {self.shard_ids[int(i) - 1] for i in lost}
        if shards - self._lost:
            log.error(
                "Another process took the lease on shard(s) %s while Redis could not be "
                "reached: two processes may be running them; stop one (each needs SHARD_IDS "
                "of its own)",
                _shards(shards),
            )
        self._lost = shards

    async def release(self) -> None:
        """A clean shutdown: the shards are free at once for a process taking over."""
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
        try:
            async with asyncio.timeout(self.budget):
                await self._release(keys=self._keys, args=[self.owner])
        except Exception as exc:  # they expire with their lifetime anyway
            log.warning("Could not give back the shard leases (they expire by themselves): %s", exc)


@contextlib.asynccontextmanager
async def hold_shards(settings: Settings, *, ttl: float | None = None) -> AsyncIterator[None]:
    """While the bot runs: its shards' leases, with REDIS_URL and SHARD_IDS (else nothing),
    for SHARD_LEASE_TTL unless `ttl` says otherwise."""
    if not settings.redis_url or not settings.shard_ids:
        yield
        return
    redis = Redis.from_url(settings.redis_url)
    leases = ShardLeases(
        redis,
        settings.shard_ids,
        secret=cluster_secret(settings),
        namespace=settings.redis_key_prefix,
        ttl=settings.shard_lease_ttl if ttl is None else ttl,
    )
    try:
        await leases.take()
        log.debug("Shard leases in Redis at %s", safe_url(settings.redis_url))
        try:
            yield
        finally:
            await leases.release()
    finally:
        await redis.aclose()


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _shards(shards: Any) -> str:
    return ", ".join(str(shard) for shard in sorted(shards))


def _holders(held: dict[int, str]) -> str:
    """Each holder's pid and host, from the leases' values ("host:pid:nonce renewals")."""
    owners = set()
    for value in held.values():
        host, _, rest = value.split(" ", 1)[0].partition(":")
        owners.add(f"pid {rest.partition(':')[0]} on {host}")
    return "; ".join(sorted(owners))


def _refusal(held: dict[int, str]) -> str:
    many = len(held) > 1
    return (
        f"shard{'s' if many else ''} {_shards(held)} of SHARD_IDS "
        f"{'are' if many else 'is'} already run by another process ({_holders(held)}), "
        "which renews its lease in Redis: give each process SHARD_IDS of its own, or stop "
        "the other one first"
    )
