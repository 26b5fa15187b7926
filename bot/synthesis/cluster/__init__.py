"""Coordination of several bot processes on one API key, through Redis (`REDIS_URL`).

* `limiter`: the cluster-wide sliding window the scheduler asks before each start (its
  `Gate`), with the 429 pause and the learned limit shared by every process.

Without `REDIS_URL` none of this is used and each process paces itself alone.
"""

from __future__ import annotations

from bot.synthesis.cluster.limiter import RedisLimiter, key_prefix, open_limiter

__all__ = ["RedisLimiter", "key_prefix", "open_limiter"]
