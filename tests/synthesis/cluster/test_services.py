"""REDIS_URL wires the shared window, cache tier and calls in flight into the services every
process builds; without it, nothing changes."""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

from bot.config import Settings
from bot.services import open_services
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest
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
