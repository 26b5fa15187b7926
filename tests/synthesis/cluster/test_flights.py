"""Identical calls in flight on several processes make one call, in a real Redis.

Each "process" is a scheduler, a `SpeechSource` and a Redis client of its own, with a fake
upstream counting its calls; one test runs the claimant as a real process and SIGKILLs it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot import audio
from bot.audio import Audio
from bot.errors import BadRequestError, BotError
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest, build_request
from bot.synthesis.cache import cache_key
from bot.synthesis.cluster import RedisFlights, RedisLink, key_prefix
from bot.synthesis.scheduler import Scheduler, SchedulerConfig
from bot.synthesis.stream import SpeechSource, SpeechStream
from tests.redis_server import RedisServer
from tests.synthesis.scheduler.fakes import AUDIO

ROOT = Path(__file__).resolve().parents[3]
PREFIX = key_prefix("sk-cluster-key")
MODEL = "model"


class Upstream:
    """One process's fake Segmind: holds calls until `gate` opens; `fail` refuses them."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.called_at: list[float] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def __call__(self, request: SpeechRequest) -> Audio:
        self.calls.append(request.text)
        self.called_at.append(time.monotonic())
        await self.gate.wait()
        if self.fail:
            raise BadRequestError(status=400)
        return AUDIO


@dataclass(eq=False)
class Process:
    upstream: Upstream
    scheduler: Scheduler
    flights: RedisFlights
    source: SpeechSource

    async def say(self, text: str, user: int = 1, *, fresh: bool = False) -> Audio:
        stream = SpeechStream(self.source, Requester(user), [build_request(text)], fresh=fresh)
        (result,) = await (await stream.start()).collect()
        return result


Make = Callable[..., Process]


@pytest.fixture
async def make(redis_url: str) -> AsyncIterator[Make]:
    made: list[tuple[Process, RedisLink]] = []

    def build(*, url: str = redis_url, lease: float = 10.0, concurrency: int = 100) -> Process:
        client: Redis = Redis.from_url(url)
        link = RedisLink(client, budget=1.0)
        upstream = Upstream()
        config = SchedulerConfig(
            rpm=1000, user_cooldown=0, max_waiting_per_user=50, max_concurrency=concurrency
        )
        scheduler = Scheduler(upstream, config)
        scheduler.start()
        flights = RedisFlights(link, prefix=PREFIX, lease=lease)
        source = SpeechSource(scheduler, model=MODEL, flights=flights)
        made.append((Process(upstream, scheduler, flights, source), link))
        return made[-1][0]

    yield build
    for process, link in made:
        process.upstream.gate.set()  # a failed test may have left calls held
        process.source.stop_waiting()
        await process.source.drain()
        await process.flights.settle()
        await process.scheduler.close(grace=0)
        await link.close()


def key_of(text: str) -> str:
    return cache_key(build_request(text), model=MODEL)


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.01)


async def test_identical_requests_on_two_processes_make_one_call(
    make: Make, redis_url: str
) -> None:
    first, second = make(), make()
    for process in (first, second):
        process.upstream.gate.clear()
    asking = [asyncio.create_task(p.say("Welcome, everyone!")) for p in (first, second)]
    await eventually(lambda: len(first.upstream.calls) + len(second.upstream.calls) == 1)
    caller, waiter = (first, second) if first.upstream.calls else (second, first)
    await asyncio.sleep(0.3)  # the waiter polls meanwhile, and never calls
    (flight,) = waiter.source._flights.values()
    assert flight.ticket is None  # no ticket, so no rate slot, while the other calls
    assert (waiter.scheduler.stats.queued, waiter.scheduler.stats.running) == (0, 0)
    caller.upstream.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*asking), 5)
    assert len(first.upstream.calls) + len(second.upstream.calls) == 1
    assert results[0].data == results[1].data
    assert audio.is_ogg_opus(results[0].data)
    assert (waiter.source.shared_flights, waiter.source.coalesced) == (1, 1)
    assert (caller.source.shared_flights, caller.source.coalesced) == (0, 0)
    async with Redis.from_url(redis_url) as client:
        key = key_of("Welcome, everyone!")
        assert await client.exists(PREFIX + "claim:" + key) == 0  # released
        assert 0 < await client.pttl(PREFIX + "answer:" + key) <= 60_000  # kept a while only


async def test_an_answer_left_a_moment_ago_is_used_without_waiting(make: Make) -> None:
    first, second = make(), make()
    made = await asyncio.wait_for(first.say("Good night"), 5)
    again = await asyncio.wait_for(second.say("Good night"), 5)
    assert again.data == made.data
    assert (first.upstream.calls, second.upstream.calls) == (["Good night"], [])
    assert second.source.shared_flights == 1


async def test_when_the_claimant_fails_the_waiter_calls_itself(make: Make) -> None:
    first, second = make(), make()
    first.upstream.gate.clear()
    first.upstream.fail = True
    failing = asyncio.create_task(first.say("Try me"))
    await eventually(lambda: first.upstream.calls == ["Try me"])
    stream = await SpeechStream(second.source, Requester(2), [build_request("Try me")]).start()
    told: list[object] = []
    stream.add_listener(told.append)
    assert stream.current is None  # made elsewhere: progress shows "making speech"
    started = time.monotonic()
    first.upstream.gate.set()
    with pytest.raises(BadRequestError):
        await asyncio.wait_for(failing, 5)
    (result,) = await asyncio.wait_for(stream.collect(), 5)
    assert audio.is_ogg_opus(result.data)
    assert second.upstream.calls == ["Try me"]
    # The failed claim was released at once, not left to run out its 10 s lease.
    assert second.upstream.called_at[0] - started < 2.0
    assert told  # progress was told when the call was queued here
    assert [ticket.state for ticket in stream.tickets] == ["done"]
    assert second.source.shared_flights == 0


async def test_a_claimant_that_dies_is_taken_over_after_its_lease(
    make: Make, redis_url: str
) -> None:
    lease = 0.6
    script = (
        "import asyncio, sys\n"
        "from redis.asyncio import Redis\n"
        "from bot.synthesis.cluster import RedisFlights\n"
        "async def main():\n"
        f"    flights = RedisFlights(Redis.from_url({redis_url!r}), prefix={PREFIX!r},"
        f" lease={lease})\n"
        f"    claim = await flights.claim({key_of('Anyone there?')!r})\n"
        "    print('CLAIMED' if claim is not None else 'NOT', flush=True)\n"
        "    await asyncio.sleep(3600)\n"
        "asyncio.run(main())\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    dying = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert dying.stdout is not None
        assert (await asyncio.wait_for(dying.stdout.readline(), 30)).strip() == b"CLAIMED"
        waiter = make(lease=lease)
        asking = asyncio.create_task(waiter.say("Anyone there?"))
        await asyncio.sleep(3 * lease)  # alive, it renews its lease: nobody takes over
        assert waiter.upstream.calls == []
        dying.send_signal(signal.SIGKILL)
        await dying.wait()
        killed = time.monotonic()
        result = await asyncio.wait_for(asking, 10)
    finally:
        if dying.returncode is None:
            dying.kill()
            await dying.wait()
    assert audio.is_ogg_opus(result.data)
    assert waiter.upstream.calls == ["Anyone there?"]
    # Within one lease (its last renewal may be just before the kill) and a slow poll.
    assert waiter.upstream.called_at[0] - killed < lease + 1.0


async def test_a_withdrawn_claimant_frees_the_key_at_once(make: Make) -> None:
    first, second = make(concurrency=1), make()
    first.upstream.gate.clear()
    busy = asyncio.create_task(first.say("Busy"))  # holds the claimant's only slot
    await eventually(lambda: first.upstream.calls == ["Busy"])
    queued = await SpeechStream(first.source, Requester(1), [build_request("Later")]).start()
    asking = asyncio.create_task(second.say("Later", user=2))
    await asyncio.sleep(0.2)
    assert second.upstream.calls == []
    queued.cancel()  # nobody on the claimant wants it: withdrawn before it cost anything
    result = await asyncio.wait_for(asking, 3)
    assert audio.is_ogg_opus(result.data)
    assert second.upstream.calls == ["Later"]
    first.upstream.gate.set()
    await asyncio.wait_for(busy, 5)
    assert first.upstream.calls == ["Busy"]


async def test_a_released_waiter_stops_polling_and_leaves_no_claim(
    make: Make, redis_url: str
) -> None:
    first, second = make(), make()
    first.upstream.gate.clear()
    first.upstream.fail = True
    failing = asyncio.create_task(first.say("Never mind"))
    await eventually(lambda: first.upstream.calls == ["Never mind"])
    stream = await SpeechStream(second.source, Requester(2), [build_request("Never mind")]).start()
    await eventually(lambda: second.flights.polls >= 2)
    stream.cancel()
    await second.source.drain()
    polls = second.flights.polls
    first.upstream.gate.set()  # the claimant fails and releases: nobody should take over
    with pytest.raises(BotError):
        await asyncio.wait_for(failing, 5)
    await asyncio.sleep(1.0)
    assert second.flights.polls == polls
    assert second.upstream.calls == []
    assert not second.source._flights
    async with Redis.from_url(redis_url) as client:
        assert await client.exists(PREFIX + "claim:" + key_of("Never mind")) == 0


async def test_fresh_neither_waits_for_nor_claims_a_call_in_flight(
    make: Make, redis_url: str
) -> None:
    first, second = make(), make()
    first.upstream.gate.clear()
    held = asyncio.create_task(first.say("Again"))
    await eventually(lambda: first.upstream.calls == ["Again"])
    fresh = await asyncio.wait_for(second.say("Again", fresh=True), 3)
    assert audio.is_ogg_opus(fresh.data)
    assert second.upstream.calls == ["Again"]
    async with Redis.from_url(redis_url) as client:
        claim = PREFIX + "claim:" + key_of("Again")
        holder = await client.get(claim)  # still the claimant's own token
        assert isinstance(holder, bytes)
        assert holder.startswith(f"{os.getpid()}-".encode())
        first.upstream.gate.set()
        await asyncio.wait_for(held, 5)
        await first.source.drain()  # members have it first; then it is shared, claim freed
        assert await client.exists(claim) == 0
    # A fresh take on the claimant's side asks too, rather than taking the shared answer.
    await first.say("Again", fresh=True)
    assert first.upstream.calls == ["Again", "Again"]


async def test_without_redis_every_process_calls_alone_and_nobody_fails(
    make: Make, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(redis_server.binary)
    server.start()
    try:
        first, second = make(url=server.url()), make(url=server.url())
        # Redis goes away while one process calls and the other waits for it.
        first.upstream.gate.clear()
        calling = asyncio.create_task(first.say("Hello"))
        await eventually(lambda: first.upstream.calls == ["Hello"])
        waiting = asyncio.create_task(second.say("Hello", user=2))
        await eventually(lambda: second.flights.polls >= 1)
        assert second.upstream.calls == []
    finally:
        server.stop()
    caplog.set_level(logging.WARNING)
    await eventually(lambda: second.upstream.calls == ["Hello"])
    first.upstream.gate.set()
    results = await asyncio.wait_for(asyncio.gather(calling, waiting), 10)
    assert all(audio.is_ogg_opus(r.data) for r in results)
    # And with Redis down from the start: each calls alone, no error.
    both = await asyncio.wait_for(asyncio.gather(first.say("Bye"), second.say("Bye", user=2)), 10)
    assert all(audio.is_ogg_opus(r.data) for r in both)
    assert first.upstream.calls == ["Hello", "Bye"]
    assert second.upstream.calls == ["Hello", "Bye"]
    warnings = [r for r in caplog.records if "Redis is unreachable" in r.getMessage()]
    assert 1 <= len(warnings) <= 2  # once per process and outage, not once per request
