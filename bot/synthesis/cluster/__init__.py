"""Coordination of several bot processes on one API key, through Redis (`REDIS_URL`).

* `limiter`: the cluster-wide sliding window the scheduler asks before each start (its
  `Gate`), with the 429 pause and the learned limit shared by every process;
* `shared_cache`: the audio cache's shared tier, behind each process's memory and disk;
* `flights`: identical calls in flight on several processes made once, the answer shared.

Without `REDIS_URL` none of this is used and each process paces itself alone.
"""

from __future__ import annotations

from bot.synthesis.cluster.flights import RedisFlights
from bot.synthesis.cluster.limiter import RedisLimiter, key_prefix, open_limiter
from bot.synthesis.cluster.shared_cache import SharedCache

__all__ = ["RedisFlights", "RedisLimiter", "SharedCache", "key_prefix", "open_limiter"]
