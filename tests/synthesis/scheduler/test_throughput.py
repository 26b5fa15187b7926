"""Issue 11, points 10-12: retries until the deadline, concurrency from rate and latency, and
work per event that does not grow with the queue. All on the fake clock; figures in real time
are the benches' job (bench/scheduler_*.py)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from bot.audio import Audio
from bot.errors import ServerError
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest
from bot.synthesis.scheduler import Scheduler, SchedulerConfig, Ticket
from bot.synthesis.scheduler import base as scheduler_base
from bot.synthesis.scheduler.plan import PLAN_INTERVAL, concurrency_limit
from tests.synthesis.scheduler.fakes import AUDIO, Build, FakeClock, FakeSynth, outcome, req

# --- point 10: retryable failures are retried until the request's deadline -----------------------


async def test_server_errors_are_retried_until_success_not_a_fixed_count(
    clock: FakeClock, build: Build
) -> None:
    synth = FakeSynth(clock, latency=1.0)
    synth.plan("1:0", *(ServerError(status=502) for _ in range(10)))
    scheduler = build(synth, rpm=100, backoff_base=1.0, backoff_max=8.0)
    ticket = scheduler.submit(req("1:0"), Requester(1))
    await clock.advance(200)
    assert await outcome(ticket) is AUDIO
    assert ticket.attempts == 11
    assert scheduler.stats.retried == 10


async def test_retries_end_at_the_deadline_with_the_last_error(
    clock: FakeClock, build: Build
) -> None:
    synth = FakeSynth(clock, latency=1.0)
    synth.plan("1:0", *(ServerError(status=503) for _ in range(1000)))
    scheduler = build(synth, rpm=100, backoff_base=1.0, backoff_max=8.0, job_timeout=100.0)
    ticket = scheduler.submit(req("1:0"), Requester(1))
    await clock.advance(300)
    error = await outcome(ticket)
    assert isinstance(error, ServerError)  # what went wrong, not "waited too long"
    assert error.attempts == ticket.attempts > 10
    assert max(synth.times()) < 100  # no attempt starts past the deadline
    assert f"after {ticket.attempts} attempts" in str(error)


class Storm:
    """A synthesize where each call fails with 502 with probability `rate` (seeded)."""

    def __init__(self, clock: FakeClock, rate: float, seed: int, latency: float) -> None:
        self.clock = clock
        self.rate = rate
        self.random = random.Random(seed)
        self.latency = latency

    async def __call__(self, request: SpeechRequest) -> Audio:
        failing = self.random.random() < self.rate
        await self.clock.sleep(self.latency)
        if failing:
            raise ServerError(status=502)
        return AUDIO


@pytest.mark.parametrize("seed", range(10))
async def test_a_30_percent_502_storm_loses_nothing(clock: FakeClock, seed: int) -> None:
    scheduler = Scheduler(
        Storm(clock, 0.3, seed, latency=18.0),
        SchedulerConfig(rpm=50, user_cooldown=0, max_queue=500, max_waiting_per_user=10),
        clock=clock,
        rng=random.Random(seed).random,
    )
    scheduler.start()
    tickets = [scheduler.submit(req(f"{user}:0"), Requester(user)) for user in range(200)]
    try:
        for _ in range(100):
            await clock.advance(60)
            if all(t.state in ("done", "failed") for t in tickets):
                break
        assert [await outcome(t) for t in tickets] == [AUDIO] * len(tickets)
    finally:
        await scheduler.close(grace=0)


# --- point 11: concurrency follows the rate and the latency ------------------------------------


async def test_a_burst_takes_only_as_long_as_the_limit_allows_at_real_latency(
    clock: FakeClock, build: Build
) -> None:
    synth = FakeSynth(clock, latency=18.0)
    # The defaults but the cooldown: 50 a minute (+0.5 s margin), calls of 18 s.
    scheduler = build(synth, rpm=50, window=60.0, safety_margin=None, initial_latency=20.0)
    tickets = [scheduler.submit(req(f"{user}:0"), Requester(user)) for user in range(100)]
    await clock.advance(200)
    assert [await outcome(t) for t in tickets] == [AUDIO] * 100
    # Best the limit allows: 50 at once, 50 more one span later, each done 18 s after it starts.
    assert synth.times() == pytest.approx([0] * 50 + [60.5] * 50)
    assert synth.max_in_flight == 50


def test_concurrency_covers_every_start_the_rate_allows_up_to_the_cap() -> None:
    assert concurrency_limit(rpm=50, span=60.5, latency=18.0, cap=100) == 50
    assert concurrency_limit(rpm=5, span=60.5, latency=20.0, cap=100) == 5
    # Calls slower than a window overlap deeper: 50 per span, each lasting ~1.5 spans.
    assert concurrency_limit(rpm=50, span=60.5, latency=60.0, cap=1000) == 100
    assert concurrency_limit(rpm=50, span=60.5, latency=600.0, cap=120) == 120
    assert concurrency_limit(rpm=1, span=1.0, latency=0.0, cap=1) == 1


# --- point 12: per-event work does not grow with the queue -------------------------------------


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count full plan computations (each is O(queue))."""
    counted: list[int] = []
    real = scheduler_base.plan  # type: ignore[attr-defined]

    def counting(*args: Any, **kwargs: Any) -> list[tuple[Ticket, float]]:
        counted.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(scheduler_base, "plan", counting)
    return counted


async def test_submitting_and_draining_a_long_queue_never_plans_it_whole(
    clock: FakeClock, build: Build, plans: list[int]
) -> None:
    synth = FakeSynth(clock, latency=0.0)
    scheduler = build(synth, rpm=10_000, window=60.0, max_queue=3000, start=False)
    tickets = [scheduler.submit(req(f"{user}:0"), Requester(user)) for user in range(3000)]
    assert tickets[10].cancel()  # withdrawing is O(1) too
    scheduler.start()
    for _ in range(100):
        await clock.advance(1)
        if scheduler.stats.served == 2999:
            break
    assert scheduler.stats.served == 2999
    assert plans == []  # nobody listened and nobody asked: no plan was needed


async def test_places_are_computed_once_per_batch_when_asked_and_stay_exact(
    clock: FakeClock, build: Build, plans: list[int]
) -> None:
    synth = FakeSynth(clock, latency=1.0)
    scheduler = build(synth, rpm=2, window=10.0, start=False, initial_latency=1.0, max_queue=500)
    tickets = [scheduler.submit(req(f"{user}:0"), Requester(user)) for user in range(500)]
    assert plans == []
    assert [t.position for t in tickets[:3]] == [1, 2, 3]
    assert tickets[499].position == 500
    assert tickets[499].eta == pytest.approx(2490 + 1)
    assert len(plans) == 1  # one plan answered every read until something changed
    assert tickets[1].cancel()
    assert tickets[2].position == 2
    assert len(plans) == 2


async def test_listeners_hear_at_most_once_per_interval_however_busy_the_queue(
    clock: FakeClock, build: Build, plans: list[int]
) -> None:
    synth = FakeSynth(clock, latency=0.01)
    scheduler = build(synth, rpm=100_000, window=60.0, max_queue=2000, max_concurrency=1)
    tickets = [scheduler.submit(req(f"{user}:0"), Requester(user)) for user in range(2000)]
    seen: list[int | None] = []
    tickets[-1].add_listener(lambda t: seen.append(t.position))
    await clock.advance(10)  # 1,000 calls of 10 ms, one at a time: 1,000+ events
    assert 1 <= len(plans) <= 10 / PLAN_INTERVAL + 2
    assert seen  # ...and the listener heard its place move
    assert seen[-1] == tickets[-1].position
    await asyncio.sleep(0)
