"""Operator alerts sent once per cluster, not once per process.

Every process on the key sees the same outage (the account out of credits halts them all) and
often the same bug, so each would tell the operator in turn: the alert channel fills with one
copy per process. Before sending, a process claims the alert's identity in Redis (`SET NX`
with a lifetime of the alert's repeat interval); only the one that set it sends. A state and
its opposite ("paused", "resumed") clear each other's claim, so a pause after a resume is told
again at once rather than after the interval.

Without Redis, or while it does not answer (within the link's budget), every process decides
alone, as a single process always did: an alert told twice beats an alert never told.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from bot.config import DEFAULT_NAMESPACE
from bot.synthesis.cluster.limiter import key_prefix
from bot.synthesis.cluster.link import RedisLink, to_ms

__all__ = ["STATE_ALERT_TTL", "OncePerCluster"]

log = logging.getLogger(__name__)

#: How long a state told to the operator (speech paused, resumed, a limit learned) is not told
#: again by another process; the opposite state clears it sooner.
STATE_ALERT_TTL = 3600.0

#: KEYS: the claim, then the claims it clears. ARGV: ttl ms. 1 if this process claimed it.
_CLAIM = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
"""


class OncePerCluster:
    """Decides which process sends an alert (see the module); `link` None: this one, always.

    `secret`: what names the cluster's keys (hashed by `key_prefix`): the Discord token, so
    two bots sharing one Redis never silence each other's alerts.
    """

    def __init__(
        self, link: RedisLink | None, *, secret: str, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        self._link = link
        self._prefix = key_prefix(secret, f"{namespace}:alert")
        self._script: Any = link.redis.register_script(_CLAIM) if link is not None else None

    async def first(self, identity: str, ttl: float, *, clears: Sequence[str] = ()) -> bool:
        """Whether this process sends the alert named `identity` (True without Redis)."""
        if self._link is None:
            return True
        keys = [self._prefix + identity, *(self._prefix + other for other in clears)]
        ms = to_ms(ttl)
        try:
            claimed: Any = await self._link.run(lambda: self._script(keys=keys, args=[ms]))
        except Exception as exc:
            log.debug("Redis could not say who sends alert %s; sending it here: %s", identity, exc)
            return True
        return bool(int(claimed))
