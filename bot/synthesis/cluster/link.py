"""The one Redis connection the shared window, the cache tier and the calls in flight use, and
what they all know about its health.

Redis only saves money and keeps processes polite to the key; a member must never wait on it.
So every round trip gets one budget (`REDIS_BUDGET`), and the first that fails or runs past it
marks Redis down for all three: from then on they are answered at once (`RedisDown`: a cache
miss, a call made alone, the process's own window) while one probe asks Redis every
`probe_every` seconds, in the background, whether it answers again. Without that, a hung Redis
would cost each lookup a budget of its own, one after the other, on every request.

At start a Redis that cannot be reached (down, hung) is such an outage, not a failure: the bot
starts and paces itself alone until it answers. A Redis that answers but refuses the bot (a
wrong password, a user without the commands it needs) is a configuration error, told once.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.errors import SettingsError
from bot.synthesis.scheduler.gate import REDIS_BUDGET

__all__ = [
    "LUA_NOW",
    "REDIS_BUDGET",
    "OutageNotice",
    "RedisDown",
    "RedisLink",
    "check_redis",
    "open_link",
    "safe_url",
    "to_ms",
]

log = logging.getLogger(__name__)

#: Lua: `now`, Redis's own clock in ms, so processes on machines with skewed clocks agree.
LUA_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""


def to_ms(seconds: float) -> int:
    """Seconds as the whole milliseconds Redis takes (`PX`), rounded up, at least 1."""
    return max(1, math.ceil(seconds * 1000))


T = TypeVar("T")

#: What a Redis that cannot be reached raises (a hung one: the budget's TimeoutError).
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)
#: Needs the scripting every part of the cluster uses, not only a connection.
_CHECK_SCRIPT = "return 1"


class RedisDown(RedisConnectionError):
    """Redis did not answer lately: not asked again until the probe hears from it."""


class RedisLink:
    """A Redis client with one time budget per round trip and a shared notion of "down"."""

    def __init__(
        self, redis: Redis, *, budget: float = REDIS_BUDGET, probe_every: float = 1.0
    ) -> None:
        self.redis = redis
        self.budget = budget
        self.probe_every = probe_every
        self._down: BaseException | None = None
        self._probe: asyncio.Task[None] | None = None
        #: Scripts known to be loaded in Redis (forgotten when it goes away: it may restart).
        self._loaded: set[str] = set()

    @property
    def down(self) -> bool:
        return self._down is not None

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` within the budget; raises `RedisDown` at once while Redis is down."""
        if self._down is not None:
            raise RedisDown(f"Redis is not answering ({_describe(self._down)})")
        try:
            async with asyncio.timeout(self.budget):
                return await call()
        except _UNREACHABLE as exc:
            self.lost(exc)
            raise

    async def preload(self, script: AsyncScript) -> None:
        """Load `script` into Redis once, before a call that carries a clip: a script Redis
        does not know yet is refused (NOSCRIPT) and redis-py sends the whole call again after
        loading it, so the first clips would travel twice (or more, made together)."""
        if script.sha in self._loaded:
            return
        await self.run(lambda: script.registered_client.script_load(script.script))
        self._loaded.add(script.sha)

    def lost(self, exc: BaseException) -> None:
        """Redis failed a round trip: skip it everywhere until the probe hears from it."""
        self._loaded.clear()
        if self._down is not None:
            return
        self._down = exc
        log.debug("Redis marked down: %s", _describe(exc))
        self._probe = asyncio.get_running_loop().create_task(
            self._probe_until_up(), name="redis-probe"
        )

    async def _probe_until_up(self) -> None:
        while True:
            await asyncio.sleep(self.probe_every)
            try:
                async with asyncio.timeout(self.budget):
                    await self.redis.ping()
            except Exception as exc:
                log.debug("Redis still not answering: %s", _describe(exc))
                continue
            self._down = None
            log.debug("Redis answers again")
            return

    async def close(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
        await self.redis.aclose()


async def check_redis(url: str, *, budget: float = REDIS_BUDGET) -> BaseException | None:
    """Ask the Redis at `url` once: None if it serves the bot, the error if it cannot be
    reached (down, hung); a Redis that refuses the bot raises `SettingsError` naming
    REDIS_URL (run before the Discord login, so a wrong password never starts a bot)."""
    redis = _client(url)
    try:
        return await _first_contact(redis, url, budget)
    finally:
        await redis.aclose()


async def open_link(
    url: str, *, budget: float = REDIS_BUDGET, probe_every: float = 1.0
) -> RedisLink:
    """The link to `url`: down from the start (logged) if Redis cannot be reached yet."""
    link = RedisLink(_client(url), budget=budget, probe_every=probe_every)
    try:
        unreachable = await _first_contact(link.redis, url, budget)
    except BaseException:
        await link.close()
        raise
    if unreachable is None:
        log.info("Pacing the API key with every process sharing Redis at %s", safe_url(url))
    else:
        log.warning(
            "Redis at %s cannot be reached (%s); starting anyway, pacing this process alone "
            "until it answers",
            safe_url(url),
            _describe(unreachable),
        )
        link.lost(unreachable)
    return link


def _client(url: str) -> Redis:
    try:
        return Redis.from_url(url)
    except ValueError:
        raise SettingsError(
            f"REDIS_URL is not a Redis URL ({safe_url(url)}): use redis://host:6379/0"
        ) from None


async def _first_contact(redis: Redis, url: str, budget: float) -> BaseException | None:
    try:
        async with asyncio.timeout(budget):
            await redis.ping()
            await redis.script_load(_CHECK_SCRIPT)
    except (AuthenticationError, ResponseError) as exc:
        raise SettingsError(
            f"REDIS_URL: the Redis at {safe_url(url)} refuses this bot "
            f"({_describe(exc).rstrip('.')}); "
            "check the user and password in REDIS_URL and that the user may run PING, EVAL "
            "and SCRIPT"
        ) from None
    except _UNREACHABLE as exc:
        return exc
    return None


def _describe(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class OutageNotice:
    """One part of the cluster's word on an outage: `lost` (a %s template for the reason) once
    as it starts, `back` once as it ends, however many round trips fail in between. Each part
    says what the outage costs it, since that is what an operator reading the log acts on."""

    def __init__(self, logger: logging.Logger, *, lost: str, back: str) -> None:
        self._log = logger
        self._lost = lost
        self._back = back
        self.down = False

    def lost(self, exc: BaseException) -> None:
        if not self.down:
            self.down = True
            self._log.warning(self._lost, _describe(exc))

    def back(self) -> None:
        if self.down:
            self.down = False
            self._log.info(self._back)


def safe_url(url: str) -> str:
    """The URL without its password, for logs and messages."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
