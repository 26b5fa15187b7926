"""Each clip's bytes go up to Redis once, however many processes want it: the process that
made it stores it as the shared clip and as the answer for the others in one write, and a
process handed that answer never sends it back.

Counted on the wire: the suite's own Redis says how many bytes it received
(`total_net_input_bytes`), so nothing about how the bot stores clips is assumed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from functools import cache

import pytest
from redis.asyncio import Redis

from bot.audio import Audio, AudioFormat
from bot.audio.encoding import encode_ogg_opus
from bot.config import Settings
from bot.services import Services, open_services
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest
from bot.synthesis.cluster import RedisFlights, RedisLink, SharedClips, key_prefix
from bot.synthesis.cluster.clips import encode_audio
from bot.synthesis.cluster.flights import RedisClaim
from tests.signals import tone

PROCESSES = 4
TEXTS = [f"New text number {i}" for i in range(10)]
#: What a round of polls, admissions and claims may add to the clips' own bytes.
OVERHEAD = 0.25


@cache
def speech_of(text: str) -> Audio:
    """About 90 KB of Ogg Opus of its own for each text (16 s: a long chunk)."""
    data = encode_ogg_opus(tone(16.0, freq=150.0 + 20 * TEXTS.index(text)))
    return Audio(data, AudioFormat.OGG, 48_000, 1, 16.0)


class Upstream:
    """Every process's fake Segmind: slow enough that the others ask while it answers."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, request: SpeechRequest) -> Audio:
        self.calls.append(request.text)
        await asyncio.sleep(0.3)
        return speech_of(request.text)


async def received_bytes(redis_url: str) -> int:
    async with Redis.from_url(redis_url) as client:
        return int((await client.info("stats"))["total_net_input_bytes"])


@pytest.fixture
async def processes(
    make_settings: Callable[..., Settings], redis_url: str
) -> AsyncIterator[tuple[Upstream, list[Services]]]:
    for text in TEXTS:
        speech_of(text)  # made before anything is counted
    upstream = Upstream()
    settings = make_settings(
        redis_url=redis_url, segmind_rpm=1000, user_cooldown=0, cache_disk_mb=0
    )
    made = [await open_services(settings, synthesize=upstream) for _ in range(PROCESSES)]
    yield upstream, made
    for services in made:
        await services.close()


async def test_each_new_clip_goes_up_to_redis_once_for_every_process(
    processes: tuple[Upstream, list[Services]], redis_url: str
) -> None:
    upstream, made = processes
    before = await received_bytes(redis_url)

    async def ask(services: Services, index: int) -> list[Audio]:
        source = services.speech.source
        pending = [
            await source.begin(SpeechRequest(text=text), Requester(index * 100 + k))
            for k, text in enumerate(TEXTS)
        ]
        return [await each.result() for each in pending]

    answers = await asyncio.gather(*(ask(services, i) for i, services in enumerate(made)))
    for services in made:
        await services.speech.source.drain()  # every result cached (and sent, if it is sent)
    sent = await received_bytes(redis_url) - before

    assert sorted(upstream.calls) == sorted(TEXTS)  # one call per text, for all four
    assert all(answer == [speech_of(text) for text in TEXTS] for answer in answers)
    clips = sum(len(encode_audio(speech_of(text))) for text in TEXTS)
    assert clips <= sent <= clips * (1 + OVERHEAD), f"{sent / clips:.2f} times the clips' bytes"


@pytest.fixture
async def link(redis_url: str) -> AsyncIterator[RedisLink]:
    made = RedisLink(Redis.from_url(redis_url), budget=1.0)
    yield made
    await made.close()


async def test_an_answer_points_to_the_clip_and_is_no_answer_once_the_clip_is_gone(
    link: RedisLink,
) -> None:
    prefix = key_prefix("sk-cluster-key")
    clips = SharedClips(link, prefix=prefix, ttl=60, budget=4 << 20)
    flights = RedisFlights(link, prefix=prefix, clips=clips)
    audio = speech_of(TEXTS[0])
    claim = await flights.claim("greeting")
    assert isinstance(claim, RedisClaim)
    await claim.publish(audio)
    assert len(await link.redis.get(flights.answer_key("greeting")) or b"") < 100
    assert await flights.claim("greeting") == audio  # read through the pointer
    await link.redis.delete(clips.clip_key("greeting"))  # deleted to fit the budget
    again = await flights.claim("greeting")
    assert isinstance(again, RedisClaim)  # nothing to hand on: this process calls
    await again.release()
    await flights.settle()


async def test_without_a_shared_tier_the_answer_carries_the_audio(link: RedisLink) -> None:
    flights = RedisFlights(link, prefix=key_prefix("sk-cluster-key"))
    audio = speech_of(TEXTS[1])
    claim = await flights.claim("greeting")
    assert isinstance(claim, RedisClaim)
    await claim.publish(audio)
    assert await link.redis.get(flights.answer_key("greeting")) == encode_audio(audio)
    assert await flights.claim("greeting") == audio
