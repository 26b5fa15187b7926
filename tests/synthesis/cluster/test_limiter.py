"""The shared window in a real Redis: atomic, expiring, one pause and one learned rate for all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from bot.synthesis.cluster import RedisLimiter, key_prefix

KEY = "sk-cluster-key"

Make = Callable[..., RedisLimiter]


@pytest.fixture
async def make(redis_url: str) -> AsyncIterator[Make]:
    """A limiter per call, each on a client of its own, as separate processes would have."""
    clients: list[Redis] = []

    def build(*, span: float = 60.0, api_key: str = KEY) -> RedisLimiter:
        client: Redis = Redis.from_url(redis_url)
        clients.append(client)
        return RedisLimiter(client, api_key=api_key, span=span)

    yield build
    for client in clients:
        await client.aclose()


async def test_admits_up_to_the_rate_then_says_when_the_oldest_leaves(make: Make) -> None:
    limiter = make(span=60.0)
    granted = [await limiter.admit(3) for _ in range(3)]
    assert all(a.slot is not None for a in granted)
    assert len({a.slot for a in granted}) == 3
    refused = await limiter.admit(3)
    assert refused.slot is None
    assert not refused.paused
    assert 59.0 < refused.wait <= 60.0


async def test_processes_share_one_window(make: Make) -> None:
    first, second = make(), make()
    assert (await first.admit(2)).slot is not None
    assert (await second.admit(2)).slot is not None
    assert (await first.admit(2)).slot is None
    assert (await second.admit(2)).slot is None


async def test_concurrent_admits_never_exceed_the_rate(make: Make) -> None:
    limiters = [make() for _ in range(8)]
    answers = await asyncio.gather(*(lim.admit(10) for lim in limiters for _ in range(6)))
    assert sum(a.slot is not None for a in answers) == 10
    assert await limiters[0].in_window() == 10


async def test_a_given_back_slot_frees_room(make: Make) -> None:
    limiter = make()
    slot = (await limiter.admit(1)).slot
    assert slot is not None
    assert (await limiter.admit(1)).slot is None
    await limiter.give_back(slot)
    assert (await limiter.admit(1)).slot is not None


async def test_a_dead_process_slots_leave_the_window_after_a_span(
    make: Make, redis_url: str
) -> None:
    dead = make(span=0.3)
    for _ in range(2):
        assert (await dead.admit(2)).slot is not None
    survivor = make(span=0.3)
    refused = await survivor.admit(2)
    assert refused.slot is None
    # Nothing the dead process wrote is kept for ever.
    async with Redis.from_url(redis_url) as client:
        ttl = await client.pttl(key_prefix(KEY) + "starts")
    assert 0 < ttl <= 300
    await asyncio.sleep(refused.wait)
    assert (await survivor.admit(2)).slot is not None


async def test_a_429_pause_holds_every_process(make: Make) -> None:
    hit, other = make(), make()
    await hit.pause(30.0)
    await hit.pause(5.0)  # a shorter pause never shortens the one in force
    answer = await other.admit(50)
    assert answer.slot is None
    assert answer.paused
    assert 29.0 < answer.wait <= 30.0


async def test_a_learned_limit_caps_every_process_until_its_hold_ends(make: Make) -> None:
    learner, other = make(), make()
    await learner.learned(2, 60.0)
    await learner.learned(4, 60.0)  # only ever lowered by another report
    answers = [await other.admit(50) for _ in range(3)]
    assert [a.slot is not None for a in answers] == [True, True, False]
    assert answers[0].rpm == 2


async def test_two_keys_do_not_share_a_window(make: Make) -> None:
    first, second = make(api_key="sk-one"), make(api_key="sk-two")
    assert (await first.admit(1)).slot is not None
    assert (await second.admit(1)).slot is not None
    assert KEY not in key_prefix(KEY)


async def test_a_probe_raises_the_learned_limit_only_from_the_level_in_force(make: Make) -> None:
    prober, other = make(), make()
    await prober.learned(8, 60.0)
    await prober.raised(8, 10, 60.0)
    assert (await other.admit(20)).rpm == 10
    await other.learned(9, 60.0)  # refused meanwhile: the decrease wins over a stale probe
    await prober.raised(8, 10, 60.0)
    assert (await other.admit(20)).rpm == 9


async def test_a_full_window_tells_a_process_how_far_past_an_even_share_it_is(
    make: Make,
) -> None:
    busy, light = make(), make()
    for _ in range(3):
        assert (await busy.admit(4)).slot is not None
    assert (await light.admit(4)).slot is not None
    assert (await busy.admit(4)).ahead == 1.0  # 3 of 4, an even share being 2
    assert (await light.admit(4)).ahead == 0.0
    alone = make(api_key="sk-alone")
    for _ in range(2):
        await alone.admit(2)
    assert (await alone.admit(2)).ahead == 0.0  # nobody else to let go first


async def test_every_answer_tells_how_many_processes_asked_lately(make: Make) -> None:
    first, second = make(span=0.2), make(span=0.2)
    assert (await first.admit(2)).sharers == 1  # alone so far
    assert (await second.admit(2)).sharers == 2
    assert (await first.admit(2)).sharers == 2
    third = make(span=0.2)
    refused = await third.admit(2)
    assert refused.slot is None
    assert refused.sharers == 3  # refused, it still wants the key
    await first.pause(60.0)
    assert (await second.admit(2)).sharers == 3  # a pause answers it too
    await asyncio.sleep(0.45)  # two spans without asking: gone from the count
    assert (await second.admit(2)).sharers == 1


async def test_a_process_holding_an_even_share_lets_a_free_slot_go_by_for_one_turn(
    make: Make,
) -> None:
    """Slots freed together would all go to whoever asks first."""
    first, second = make(), make()
    taken = await second.admit(4)  # the second asked lately...
    assert taken.slot is not None
    await second.give_back(taken.slot)  # ...and holds nothing now
    assert (await first.admit(4)).slot is not None
    assert (await first.admit(4)).slot is not None  # two of four: an even share of two
    turn = await first.admit(4)
    assert turn.slot is None
    assert not turn.paused
    assert 0 < turn.wait <= 0.1 * 60.0 / 4
    assert (await second.admit(4)).slot is not None  # its turn: taken meanwhile
    assert (await first.admit(4)).slot is not None  # still free after the turn: taken
    assert (await first.admit(4)).slot is None  # full
