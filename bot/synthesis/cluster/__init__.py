"""Coordination of several bot processes on one API key, through Redis (`REDIS_URL`).

* `limiter`: the cluster-wide sliding window the scheduler asks before each start (its
  `Gate`), with the 429 pause and the learned limit shared by every process;
* `shared_cache`: the audio cache's shared tier, behind each process's memory and disk, its
  clips stored once (`clips`) within the bot's own byte budget (`CACHE_SHARED_MB`);
* `flights`: identical calls in flight on several processes made once, the answer shared;
* `members`: each member's cooldown and waiting cap, counted across every process;
* `leases`: one process per shard (`SHARD_IDS`), a lease in Redis for each, refused twice;
* `once`: operator alerts told by one process of the cluster, not by each;
* `link`: the connection they share, each round trip within `REDIS_BUDGET`, and Redis's health:
  down or hung, it is skipped (each process alone) until it answers again.

Without `REDIS_URL` none of this is used and each process paces itself alone.
"""

from __future__ import annotations

from bot.synthesis.cluster.clips import SharedClips, check_eviction
from bot.synthesis.cluster.flights import RedisFlights
from bot.synthesis.cluster.leases import LEASE_TTL, ShardLeases, hold_shards
from bot.synthesis.cluster.limiter import RedisLimiter, key_prefix
from bot.synthesis.cluster.link import REDIS_BUDGET, RedisLink, check_redis, open_link
from bot.synthesis.cluster.members import RedisTurns
from bot.synthesis.cluster.names import cluster_secret
from bot.synthesis.cluster.once import STATE_ALERT_TTL, OncePerCluster
from bot.synthesis.cluster.shared_cache import SharedCache

__all__ = [
    "LEASE_TTL",
    "REDIS_BUDGET",
    "STATE_ALERT_TTL",
    "OncePerCluster",
    "RedisFlights",
    "RedisLimiter",
    "RedisLink",
    "RedisTurns",
    "ShardLeases",
    "SharedCache",
    "SharedClips",
    "check_eviction",
    "check_redis",
    "cluster_secret",
    "hold_shards",
    "key_prefix",
    "open_link",
]
