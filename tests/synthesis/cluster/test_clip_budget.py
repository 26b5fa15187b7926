"""The shared clip tier keeps within CACHE_SHARED_MB by its own count, evicting its oldest
clips, never a coordination key; a Redis that may evict those is named at start.

Every test builds the services as the bot does (`open_services` with REDIS_URL) and looks at
what actually sits in a real Redis, not at the bot's own books.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from redis.asyncio import Redis

from bot.audio import Audio, AudioFormat
from bot.config import Settings
from bot.services import Services, open_services
from bot.synthesis.cluster import RedisLimiter, SharedCache, key_prefix
from tests.conftest import TEST_API_KEY
from tests.redis_server import RedisServer

MIB = 1024 * 1024
CLIP = 40_000


def name(i: int) -> str:
    """A cache key (64 hex digits) that sorts as `i` does."""
    return f"{i:064x}"


def clip(i: int, size: int = CLIP) -> Audio:
    """Bytes nobody else has (Redis would not compress them either)."""
    return Audio(os.urandom(size), AudioFormat.OGG, 48_000, 1, 2.0 + i / 1000)


async def clips_in(redis_url: str) -> dict[str, int]:
    """Every clip in Redis, by cache key, with its stored size."""
    async with Redis.from_url(redis_url) as client:
        return {
            name.decode().rsplit(":clip:", 1)[1]: int(await client.strlen(name))
            async for name in client.scan_iter(match="*:clip:*", count=1000)
        }


@pytest.fixture
async def opened() -> AsyncIterator[list[Services]]:
    made: list[Services] = []
    yield made
    for services in made:
        await services.close()


async def open_on(
    made: list[Services], make_settings: Callable[..., Settings], **settings: object
) -> Services:
    settings.setdefault("cache_disk_mb", 0)
    services = await open_services(make_settings(**settings))
    made.append(services)
    return services


async def test_a_stream_of_clips_stays_within_cache_shared_mb_the_oldest_going_first(
    make_settings: Callable[..., Settings], redis_url: str, opened: list[Services]
) -> None:
    services = await open_on(opened, make_settings, redis_url=redis_url, cache_shared_mb=1)
    for i in range(60):  # 2.4 MB of clips through a 1 MiB tier
        await services.cache.put(name(i), clip(i))
        assert sum((await clips_in(redis_url)).values()) <= MIB
    kept = sorted(await clips_in(redis_url))
    assert len(kept) >= 20  # the budget is used, not emptied
    assert kept == [name(i) for i in range(60 - len(kept), 60)]
    assert isinstance(services.cache, SharedCache)
    assert services.cache.clips.evicted == 60 - len(kept)  # the bot deleted them, not Redis


async def test_a_clip_too_big_for_the_budget_is_never_sent(
    make_settings: Callable[..., Settings], redis_url: str, opened: list[Services]
) -> None:
    made = await open_on(opened, make_settings, redis_url=redis_url, cache_shared_mb=1)
    other = await open_on(opened, make_settings, redis_url=redis_url, cache_shared_mb=1)
    await made.cache.put(name(1), clip(1))
    await made.cache.put(name(2), clip(2, size=MIB // 8))  # an eighth of the tier
    assert set(await clips_in(redis_url)) == {name(1)}
    assert await other.cache.get(name(2)) is None
    assert await made.cache.get(name(2)) is not None  # still this process's own


async def test_cache_shared_mb_0_keeps_clips_out_of_redis(
    make_settings: Callable[..., Settings], redis_url: str, opened: list[Services]
) -> None:
    services = await open_on(opened, make_settings, redis_url=redis_url, cache_shared_mb=0)
    await services.cache.put(name(3), clip(1))
    assert await clips_in(redis_url) == {}
    assert await services.cache.get(name(3)) is not None


@pytest.fixture
def servers(redis_server: RedisServer) -> Iterator[Callable[..., RedisServer]]:
    """Redis servers of this test's own, started with the options given."""
    made: list[RedisServer] = []

    def start(*args: str) -> RedisServer:
        made.append(RedisServer(redis_server.binary, args=args))
        made[-1].start()
        return made[-1]

    yield start
    for server in made:
        server.stop()


@pytest.fixture
def evicting_redis(servers: Callable[..., RedisServer]) -> RedisServer:
    """A Redis as the issue found it: a small maxmemory, evicting keys that expire."""
    return servers("--maxmemory", "4mb", "--maxmemory-policy", "volatile-lru")


async def test_coordination_keys_survive_a_stream_of_clips_on_an_evicting_redis(
    make_settings: Callable[..., Settings], evicting_redis: RedisServer, opened: list[Services]
) -> None:
    url = evicting_redis.url(0)
    services = await open_on(opened, make_settings, redis_url=url, cache_shared_mb=1)
    assert services.cluster is not None
    assert services.speech.source.flights is not None
    limiter = RedisLimiter(services.cluster, api_key=TEST_API_KEY, span=600)
    assert (await limiter.admit(50)).slot is not None
    await limiter.pause(600)
    await limiter.learned(40, 600)
    claim = await services.speech.source.flights.claim(name(999))
    prefix = key_prefix(TEST_API_KEY)
    coordination = [prefix + "starts", prefix + "pause", prefix + "learned"]
    coordination.append(prefix + "claim:" + name(999))
    try:
        for i in range(150):  # 6 MB of clips into a 4 MB Redis
            await services.cache.put(name(i), clip(i))
        async with Redis.from_url(url) as client:
            assert [key for key in coordination if not await client.exists(key)] == []
            assert int((await client.info("stats"))["evicted_keys"]) == 0
    finally:
        if claim is not None and not isinstance(claim, Audio):
            await claim.release()


async def test_an_evicting_redis_is_named_once_at_start(
    make_settings: Callable[..., Settings],
    evicting_redis: RedisServer,
    opened: list[Services],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        await open_on(opened, make_settings, redis_url=evicting_redis.url(0), cache_shared_mb=1)
    warned = [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]
    assert len(warned) == 1
    assert "volatile-lru" in warned[0]
    assert "noeviction" in warned[0]


async def test_a_redis_without_maxmemory_is_not_warned_about(
    make_settings: Callable[..., Settings],
    redis_url: str,
    opened: list[Services],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        await open_on(opened, make_settings, redis_url=redis_url)
    assert not [r for r in caplog.records if "maxmemory" in r.getMessage()]


async def test_a_redis_refusing_config_get_starts_the_bot_quietly(
    make_settings: Callable[..., Settings],
    servers: Callable[..., RedisServer],
    opened: list[Services],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = servers("--user", "default", "on", "nopass", "~*", "&*", "+@all", "-config")
    with caplog.at_level(logging.WARNING):
        services = await open_on(opened, make_settings, redis_url=server.url(0))
    await services.cache.put(name(4), clip(1))
    assert list(await clips_in(server.url(0))) == [name(4)]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
