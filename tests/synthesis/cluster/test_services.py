"""REDIS_URL wires the shared window, cache tier and calls in flight into the services every
process builds; without it, nothing changes."""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

from bot.config import Settings
from bot.services import open_services
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest
from bot.synthesis.cache import cache_key
from bot.synthesis.cluster import RedisFlights, SharedCache, key_prefix
from tests import fake_segmind as fs
from tests.conftest import TEST_API_KEY


async def test_redis_url_makes_every_start_take_a_shared_slot(
    make_settings: Callable[..., Settings], redis_url: str
) -> None:
    async with fs.FakeSegmind(api_key=TEST_API_KEY) as fake:
        settings = make_settings(
            segmind_base_url=fake.base_url, user_cooldown=0, redis_url=redis_url
        )
        services = await open_services(settings)
        try:
            ticket = services.scheduler.submit(SpeechRequest(text="hello"), Requester(1))
            await ticket.result()
            assert isinstance(services.cache, SharedCache)
            assert isinstance(services.speech.source.flights, RedisFlights)
        finally:
            await services.close()
    async with Redis.from_url(redis_url) as client:
        assert await client.zcard(key_prefix(TEST_API_KEY) + "starts") == 1


async def test_without_redis_url_the_scheduler_paces_alone(
    make_settings: Callable[..., Settings],
) -> None:
    services = await open_services(make_settings())
    try:
        assert services.scheduler._gate is None
        assert not isinstance(services.cache, SharedCache)
        assert services.speech.source.flights is None
    finally:
        await services.close()


async def test_two_key_prefixes_on_one_redis_and_one_key_never_meet(
    make_settings: Callable[..., Settings], redis_url: str
) -> None:
    async with fs.FakeSegmind(api_key=TEST_API_KEY) as fake:

        def settings(prefix: str) -> Settings:
            return make_settings(
                segmind_base_url=fake.base_url,
                user_cooldown=0,
                redis_url=redis_url,
                redis_key_prefix=prefix,
                cache_disk_mb=0,
            )

        first = await open_services(settings("bot-a"))
        second = await open_services(settings("bot-b"))
        same = await open_services(settings("bot-a"))
        key = cache_key(SpeechRequest(text="hello"), model=first.settings.segmind_model)
        try:
            ticket = first.scheduler.submit(SpeechRequest(text="hello"), Requester(1))
            await first.cache.put(key, await ticket.result())
            assert await second.cache.get(key) is None  # the other bot's clips are not its own
            assert await same.cache.get(key) is not None  # one bot's processes share them
            await second.scheduler.submit(SpeechRequest(text="its own"), Requester(2)).result()
        finally:
            for services in (first, second, same):
                await services.close()
    async with Redis.from_url(redis_url) as client:
        names = [name.decode() async for name in client.scan_iter()]
        for prefix in ("bot-a", "bot-b"):  # a window each, one start in each
            assert await client.zcard(key_prefix(TEST_API_KEY, prefix) + "starts") == 1
    assert [name for name in names if not name.startswith(("bot-a:", "bot-b:"))] == []
