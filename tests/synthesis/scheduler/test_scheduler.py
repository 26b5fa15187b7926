"""The scheduler: pacing, fairness, 429s, retries, halts, expiry, cancellation, ETAs.

Unit tests run on a fake clock that moves only when a test advances it, against a fake
`synthesize` that records each call's (fake) time; the last tests use the real client against
the fake Segmind server in real time.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.audio import Audio
from bot.config import Settings
from bot.errors import (
    AuthenticationError,
    BadRequestError,
    CooldownError,
    OutOfCreditsError,
    QueueFullError,
    RequestExpiredError,
    SchedulerClosedError,
    SegmindError,
    ServerError,
)
from bot.speech.access import Requester
from bot.synthesis.client import SegmindClient
from bot.synthesis.scheduler import Attempt, Scheduler, SchedulerConfig, Ticket
from tests.fake_segmind import FakeSegmind, rate_limited
from tests.synthesis.scheduler.fakes import (
    AUDIO,
    Build,
    FakeClock,
    FakeSynth,
    broken_listener,
    is_halted,
    limited,
    outcome,
    req,
    settle,
)

# --- fairness, cooldown, caps -------------------------------------------------------------------


async def test_members_are_served_round_robin(clock: FakeClock, build: Build) -> None:
    synth = FakeSynth(clock, latency=1.0)
    scheduler = build(synth, max_concurrency=1, rpm=100)
    tickets = [
        scheduler.submit(req(f"{user}:{i}"), Requester(user))
        for user, n in ((1, 3), (2, 2), (3, 1))
        for i in range(n)
    ]
    # Serve order 1 2 3 1 2 1: member 1's tickets are 1st, 4th and 6th.
    assert [t.position for t in tickets] == [1, 4, 6, 2, 5, 3]
    await clock.advance(10)
    assert [call.user for call in synth.calls] == [1, 2, 3, 1, 2, 1]
    assert synth.times() == pytest.approx([0, 1, 2, 3, 4, 5])
    assert [await outcome(t) for t in tickets] == [AUDIO] * len(tickets)
    assert scheduler.stats.served == 6


async def test_a_member_who_joins_late_is_served_in_the_next_round(
    clock: FakeClock, build: Build
) -> None:
    synth = FakeSynth(clock, latency=1.0)
    scheduler = build(synth, max_concurrency=1, rpm=100)
    for user, n in ((1, 3), (2, 2), (3, 1)):
        for i in range(n):
            scheduler.submit(req(f"{user}:{i}"), Requester(user))
    await clock.advance_to(1.5)  # 1 and 2 served; 3, 1, 2, 1 waiting
    late = scheduler.submit(req("4:0"), Requester(4))
    assert late.position == 4  # behind this round (3, 1, 2), ahead of member 1's third
    await clock.advance(10)
    assert [call.user for call in synth.calls] == [1, 2, 3, 1, 2, 4, 1]


async def test_cooldown_refuses_then_accepts(clock: FakeClock, build: Build) -> None:
    synth = FakeSynth(clock, latency=1.0)
    scheduler = build(synth, user_cooldown=5.0)
    scheduler.submit(req("1:0"), Requester(1))
    await clock.advance(2)
    with pytest.raises(CooldownError) as info:
        scheduler.submit(req("1:1"), Requester(1))
    assert info.value.retry_after == pytest.approx(3.0)
    assert scheduler.cooldown_remaining(1) == pytest.approx(3.0)  # a refusal does not restart it
    scheduler.submit(req("2:0"), Requester(2))  # others are not affected
    await clock.advance(3)
    assert scheduler.cooldown_remaining(1) == 0
    ticket = scheduler.submit(req("1:1"), Requester(1))
    await clock.advance(2)
    assert await outcome(ticket) is AUDIO


async def test_follow_up_chunks_skip_the_cooldown_and_member_cap(
    clock: FakeClock, build: Build
) -> None:
    synth = FakeSynth(clock, latency=1.0)
    scheduler = build(synth, user_cooldown=30.0, max_waiting_per_user=2, max_concurrency=1)
    first = scheduler.submit(req("1:0"), Requester(1))
    rest = [scheduler.submit(req(f"1:{n}"), Requester(1), follow_up=True) for n in (1, 2, 3)]
    # A new message is still refused: the cooldown started with the first chunk only...
    with pytest.raises(CooldownError) as info:
        scheduler.submit(req("1:new"), Requester(1))
    assert info.value.retry_after == pytest.approx(30.0)
    # ...and others are still served fairly between the chunks.
    scheduler.submit(req("2:0"), Requester(2))
    await clock.advance(10)
    assert synth.texts() == ["1:0", "2:0", "1:1", "1:2", "1:3"]
    assert [await outcome(t) for t in (first, *rest)] == [AUDIO] * 4


async def test_no_cooldown_keeps_the_member_cap_unless_uncapped(
    clock: FakeClock, build: Build
) -> None:
    synth = FakeSynth(clock, latency=1.0)
    scheduler = build(
        synth, user_cooldown=30.0, max_waiting_per_user=2, max_concurrency=1, max_queue=4
    )
    scheduler.submit(req("1:0"), Requester(1, cooldown=0))
    scheduler.submit(req("1:1"), Requester(1, cooldown=0))
    with pytest.raises(QueueFullError):
        scheduler.submit(req("1:2"), Requester(1, cooldown=0))
    assert scheduler.cooldown_remaining(1) == 0  # No cooldown was started.
    # Narration (uncapped) is bounded by the global queue only.
    scheduler.submit(req("1:2"), Requester(1, cooldown=0, capped=False))
    scheduler.submit(req("1:3"), Requester(1, cooldown=0, capped=False))
    with pytest.raises(QueueFullError) as refused:
        scheduler.submit(req("1:4"), Requester(1, cooldown=0, capped=False))
    assert refused.value.per_user is False
    await clock.advance(10)
    assert synth.texts() == ["1:0", "1:1", "1:2", "1:3"]


async def test_a_servers_own_cooldown_replaces_the_default(clock: FakeClock, build: Build) -> None:
    synth = FakeSynth(clock, latency=1.0)
    scheduler = build(synth, user_cooldown=5.0)
    scheduler.submit(req("1:0"), Requester(1, cooldown=60.0))
    scheduler.submit(req("2:0"), Requester(2, cooldown=0.0))
    assert scheduler.cooldown_remaining(1) == pytest.approx(60.0)
    assert scheduler.cooldown_remaining(2) == 0
    scheduler.submit(req("2:1"), Requester(2))  # No cooldown was started for member 2.
    with pytest.raises(CooldownError):
        scheduler.submit(req("2:2"), Requester(2))  # ...but the default one applies to this one.


async def test_every_api_call_is_reported_for_usage(clock: FakeClock, build: Build) -> None:
    synth = FakeSynth(clock, latency=2.0)
    synth.plan("1:0", ServerError(status=502), limited(1.0))
    attempts: list[Attempt] = []
    scheduler = build(synth, on_attempt=attempts.append, backoff_base=0.0)
    ticket = scheduler.submit(req("1:0"), Requester(1, guild_id=77))
    await clock.advance(30)
    assert await outcome(ticket) is AUDIO
    assert [(a.status, a.guild_id, a.user_id) for a in attempts] == [
        (502, 77, 1),
        (429, 77, 1),
        (200, 77, 1),
    ]
    assert [a.elapsed for a in attempts] == pytest.approx([2.0, 2.0, 2.0])
    assert attempts[-1].audio_seconds == pytest.approx(AUDIO.duration)


async def test_per_member_cap_counts_queued_and_running(clock: FakeClock, build: Build) -> None:
    synth = FakeSynth(clock, latency=1.0)
    scheduler = build(synth, max_waiting_per_user=2, max_concurrency=1)
    scheduler.submit(req("1:0"), Requester(1))
    scheduler.submit(req("1:1"), Requester(1))
    await settle()  # 1:0 running, 1:1 queued
    with pytest.raises(QueueFullError) as info:
        scheduler.submit(req("1:2"), Requester(1))
    assert info.value.per_user
    assert info.value.limit == 2
    scheduler.submit(req("2:0"), Requester(2))
    await clock.advance(1)  # 1:0 done
    scheduler.submit(req("1:2"), Requester(1))


async def test_global_queue_cap_counts_only_queued(clock: FakeClock, build: Build) -> None:
    synth = FakeSynth(clock, latency=10.0)
    scheduler = build(synth, max_queue=3, max_concurrency=1)
    for user in (1, 2, 3):
        scheduler.submit(req(f"{user}:0"), Requester(user))
    with pytest.raises(QueueFullError) as info:
        scheduler.submit(req("4:0"), Requester(4))
    assert not info.value.per_user
    assert info.value.limit == 3
    await settle()  # one starts, freeing a queue place
    scheduler.submit(req("4:0"), Requester(4))
    stats = scheduler.stats
    assert (stats.queued, stats.running) == (3, 1)


# --- the rate limiter ---------------------------------------------------------------------------


async def test_bursts_to_the_limit_then_waits_a_window_plus_margin(
    clock: FakeClock, build: Build
) -> None:
    synth = FakeSynth(clock)
    scheduler = build(synth, rpm=5, window=60.0, safety_margin=None, max_concurrency=20)
    assert scheduler.config.margin == 0.5
    for user in range(12):
        scheduler.submit(req(f"{user}:0"), Requester(user))
    await clock.advance(200)
    assert synth.times() == pytest.approx([0] * 5 + [60.5] * 5 + [121] * 2)


async def _drive_load(
    config: SchedulerConfig, jobs: list[tuple[int, float, float]]
) -> tuple[FakeSynth, list[Ticket]]:
    clock = FakeClock()
    texts = [f"{user}:{i}" for i, (user, _, _) in enumerate(jobs)]
    latency = {text: lat for text, (_, _, lat) in zip(texts, jobs, strict=True)}
    synth = FakeSynth(clock, latency=latency.__getitem__)
    scheduler = Scheduler(synth, config, clock=clock, rng=lambda: 0.5)
    scheduler.start()
    tickets = []
    for text, (user, at, _) in sorted(zip(texts, jobs, strict=True), key=lambda j: j[1][1]):
        await clock.advance_to(at)
        tickets.append(scheduler.submit(req(text), Requester(user)))
    for _ in range(10_000):
        if all(t.state in ("done", "failed") for t in tickets):
            break
        await clock.advance(config.window / 2)
    await scheduler.close(grace=0)
    return synth, tickets


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    rpm=st.integers(1, 10),
    window=st.sampled_from([1.0, 7.5, 60.0]),
    margin=st.sampled_from([None, 0.0, 0.25]),
    concurrency=st.integers(1, 12),
    jobs=st.lists(
        st.tuples(st.integers(1, 8), st.floats(0, 3), st.floats(0, 2)), min_size=1, max_size=40
    ),
)
def test_limiter_never_exceeds_rpm_in_any_window(
    rpm: int,
    window: float,
    margin: float | None,
    concurrency: int,
    jobs: list[tuple[int, float, float]],
) -> None:
    config = SchedulerConfig(
        rpm=rpm,
        window=window,
        safety_margin=margin,
        max_concurrency=concurrency,
        user_cooldown=0,
        max_waiting_per_user=50,
        max_queue=1000,
    )
    scaled = [(user, at * window, lat * window) for user, at, lat in jobs]
    synth, tickets = asyncio.run(_drive_load(config, scaled))
    assert all(t.state == "done" for t in tickets)  # nothing lost
    assert len(synth.calls) == len(jobs)
    assert synth.max_in_flight <= concurrency
    times = synth.times()
    for at in times:
        in_window = [t for t in times if at - config.span + 1e-6 < t <= at + 1e-9]
        assert len(in_window) <= rpm, (at, in_window)


# --- 429s ---------------------------------------------------------------------------------------


async def test_429_pauses_everything_until_the_reset_and_serves_the_hit_request_first(
    clock: FakeClock, build: Build
) -> None:
    synth = FakeSynth(clock, latency=1.0)
    synth.plan("1:0", limited(7.0))
    scheduler = build(synth, max_concurrency=1, rpm=100, initial_latency=1.0)
    tickets = [scheduler.submit(req(f"{user}:0"), Requester(user)) for user in (1, 2, 3)]
    await clock.advance_to(1)  # the 429 arrives
    assert scheduler.paused_until == pytest.approx(clock.origin + 8)
    assert scheduler.stats.rate_limited == 1
    assert (tickets[0].state, tickets[0].position, tickets[1].position) == ("queued", 1, 2)
    assert tickets[1].eta == pytest.approx(9)  # 1:0 from 8 to 9, then 2:0 from 9 to 10
    await clock.advance_to(7.999)
    assert len(synth.calls) == 1
    await clock.advance_to(8)
    assert synth.texts() == ["1:0", "1:0"]
    assert synth.times()[1] == pytest.approx(8)
    assert scheduler.paused_until is None
    await clock.advance(10)
    assert synth.texts() == ["1:0", "1:0", "2:0", "3:0"]
    assert [await outcome(t) for t in tickets] == [AUDIO] * len(tickets)
    assert tickets[0].attempts == 2


async def test_429_without_reset_headers_backs_off_from_window_over_rpm(
    clock: FakeClock, build: Build
) -> None:
    synth = FakeSynth(clock, latency=1.0)
    synth.plan("1:0", limited(None), limited(None))
    scheduler = build(synth, rpm=5, window=60.0, max_concurrency=1)
    ticket = scheduler.submit(req("1:0"), Requester(1))
    await clock.advance(100)
    # 429 at 1 -> wait 60/5 = 12 s; 429 at 14 -> wait 24 s; then success.
    assert synth.times() == pytest.approx([0, 13, 38])
    assert await outcome(ticket) is AUDIO
    assert scheduler.stats.rate_limited == 2


async def test_a_second_429_at_a_rate_lowers_it_for_two_windows_of_demand(
    clock: FakeClock, build: Build
) -> None:
    synth = FakeSynth(clock)
    synth.plan("0:0", limited(1.0))
    synth.plan("6:0", limited(1.0))
    scheduler = build(synth, rpm=5, window=10.0, max_concurrency=20)
    for user in range(24):
        scheduler.submit(req(f"{user}:0"), Requester(user))
    await clock.advance(5)
    assert scheduler.effective_rpm == 5  # a lone 429 is blamed on timing once
    await clock.advance(10)
    assert scheduler.effective_rpm == 4  # a second at the same rate: the server let 4 through
    await clock.advance(50)
    # The lone first 429 gives its slot back (blamed on timing): 0:0 goes again right after its
    # pause, at 1. The second counts against the rate: 4 per 10 s until two windows after the
    # pause that ended at 11 (during which the rate held calls back), then 5 again from 40.
    # The lone first 429 gives its slot back (blamed on timing): 0:0 goes again right after its
    # pause, at 1, and the queue after it is released evenly at one call per 10/5 s: 5:0 at 10
    # (the burst aged out), 6:0 at 12. That second 429 counts against the rate: 4 per 10 s,
    # its pause's end (13) released evenly again (one per 2.5 s, or as the window frees), until
    # two windows after that pause, during which the rate held calls back: 5 again from 33.
    assert synth.times() == pytest.approx(
        [0] * 5
        + [1, 10, 12, 13, 15.5, 20, 22.5, 23, 25.5, 30, 32.5, 33, 33, 35.5, 40, 42.5]
        + [43, 43, 45.5, 50, 52.5]
    )
    assert (synth.texts()[5], synth.texts()[7], synth.texts()[8]) == ("0:0", "6:0", "6:0")
    assert scheduler.stats.served == 24


# --- other failures -----------------------------------------------------------------------------


async def test_server_errors_are_retried_with_backoff_while_others_are_served(
    clock: FakeClock, build: Build
) -> None:
    synth = FakeSynth(clock, latency=1.0)
    synth.plan("1:0", *(ServerError(status=500) for _ in range(5)))
    scheduler = build(synth, max_concurrency=1, rpm=100, max_attempts=3, backoff_base=2.0)
    tickets = [scheduler.submit(req(f"{user}:0"), Requester(user)) for user in (1, 2, 3)]
    await clock.advance(20)
    # Back-off with rng=0: 1 s after the first failure, 2 s after the second.
    assert synth.texts() == ["1:0", "2:0", "1:0", "3:0", "1:0"]
    assert synth.times() == pytest.approx([0, 1, 2, 3, 5])
    failure = await outcome(tickets[0])
    assert isinstance(failure, ServerError)
    assert failure.attempts == 3
    assert [await outcome(t) for t in tickets[1:]] == [AUDIO, AUDIO]
    stats = scheduler.stats
    assert (stats.retried, stats.failed, stats.served) == (2, 1, 2)


async def test_non_retryable_failure_fails_only_that_ticket(clock: FakeClock, build: Build) -> None:
    synth = FakeSynth(clock, latency=1.0)
    synth.plan("1:0", BadRequestError(status=400, upstream_message="text is too long"))
    scheduler = build(synth, max_concurrency=1, rpm=100)
    bad = scheduler.submit(req("1:0"), Requester(1))
    good = scheduler.submit(req("2:0"), Requester(2))
    await clock.advance(5)
    assert isinstance(await outcome(bad), BadRequestError)
    assert bad.state == "failed"
    assert await outcome(good) is AUDIO
    assert synth.texts() == ["1:0", "2:0"]
    assert scheduler.halted is None


async def test_out_of_credits_halts_everything_once(clock: FakeClock, build: Build) -> None:
    halts: list[SegmindError] = []

    async def on_halt(error: SegmindError) -> None:
        halts.append(error)

    synth = FakeSynth(clock, latency=1.0)
    synth.plan("1:0", OutOfCreditsError(status=406))
    synth.plan("2:0", OutOfCreditsError(status=406))
    scheduler = build(synth, max_concurrency=2, rpm=100, on_halt=on_halt)
    tickets = [scheduler.submit(req(f"{user}:0"), Requester(user)) for user in (1, 2, 3, 4)]
    await clock.advance(1)
    assert len(halts) == 1
    assert isinstance(halts[0], OutOfCreditsError)
    assert isinstance(scheduler.halted, OutOfCreditsError)
    for ticket in tickets:
        assert isinstance(await outcome(ticket), OutOfCreditsError)
    with pytest.raises(OutOfCreditsError) as info:
        scheduler.submit(req("5:0"), Requester(5))
    assert info.value is not scheduler.halted
    assert info.value.user_message == OutOfCreditsError().user_message
    await clock.advance(10_000)  # no probe: stays halted, calls nothing
    assert isinstance(scheduler.halted, OutOfCreditsError)
    assert synth.texts() == ["1:0", "2:0"]
    assert len(halts) == 1
    assert scheduler.stats.failed == 4


async def test_probe_resumes_after_a_halt(clock: FakeClock, build: Build) -> None:
    answers = deque([False, True])
    probes: list[float] = []
    resumed: list[float] = []

    async def probe() -> bool:
        probes.append(clock.elapsed)
        return answers.popleft()

    async def on_resume() -> None:
        resumed.append(clock.elapsed)

    synth = FakeSynth(clock, latency=1.0)
    synth.plan("1:0", AuthenticationError(status=401))
    scheduler = build(synth, halt_probe_interval=300.0, probe=probe, on_resume=on_resume)
    scheduler.submit(req("1:0"), Requester(1))
    await clock.advance_to(1)
    with pytest.raises(AuthenticationError):
        scheduler.submit(req("2:0"), Requester(2))
    await clock.advance_to(301)
    assert probes == pytest.approx([301])
    assert isinstance(scheduler.halted, AuthenticationError)
    await clock.advance_to(601)
    assert probes == pytest.approx([301, 601])
    assert resumed == pytest.approx([601])
    assert not is_halted(scheduler)
    ticket = scheduler.submit(req("2:0"), Requester(2))
    await clock.advance(1)
    assert await outcome(ticket) is AUDIO


async def test_unexpected_exception_fails_the_ticket_not_the_scheduler(
    clock: FakeClock, build: Build
) -> None:
    synth = FakeSynth(clock, latency=1.0)
    synth.plan("1:0", ValueError("bug"))
    scheduler = build(synth, rpm=100)
    broken = scheduler.submit(req("1:0"), Requester(1))
    fine = scheduler.submit(req("2:0"), Requester(2))
    await clock.advance(2)
    assert isinstance(await outcome(broken), ValueError)
    assert await outcome(fine) is AUDIO


# --- expiry, cancellation, shutdown -------------------------------------------------------------


async def test_a_ticket_queued_past_job_timeout_expires(clock: FakeClock, build: Build) -> None:
    synth = FakeSynth(clock, latency=1.0)
    scheduler = build(synth, rpm=1, window=60.0, job_timeout=50.0)
    first = scheduler.submit(req("1:0"), Requester(1))
    late = scheduler.submit(req("2:0"), Requester(2))  # would start at 60
    await clock.advance_to(49.9)
    assert late.state == "queued"
    await clock.advance_to(50)
    assert isinstance(await outcome(late), RequestExpiredError)
    await clock.advance_to(200)
    assert synth.texts() == ["1:0"]
    assert await outcome(first) is AUDIO
    assert scheduler.stats.expired == 1


async def test_a_ticket_waiting_out_a_429_still_expires(clock: FakeClock, build: Build) -> None:
    synth = FakeSynth(clock, latency=1.0)
    synth.plan("1:0", limited(100.0))
    scheduler = build(synth, rpm=100, job_timeout=50.0)
    ticket = scheduler.submit(req("1:0"), Requester(1))
    await clock.advance_to(50)
    assert isinstance(await outcome(ticket), RequestExpiredError)
    await clock.advance_to(200)
    assert synth.texts() == ["1:0"]


async def test_cancel_withdraws_only_queued_tickets(clock: FakeClock, build: Build) -> None:
    synth = FakeSynth(clock, latency=5.0)
    scheduler = build(synth, max_concurrency=1, rpm=100, max_waiting_per_user=1)
    running = scheduler.submit(req("1:0"), Requester(1))
    withdrawn = scheduler.submit(req("2:0"), Requester(2))
    last = scheduler.submit(req("3:0"), Requester(3))
    await settle()
    assert last.position == 2
    assert withdrawn.cancel()
    assert withdrawn.cancelled
    assert withdrawn.state == "failed"
    assert last.position == 1
    assert not running.cancel()
    assert not withdrawn.cancel()
    assert isinstance(await outcome(withdrawn), asyncio.CancelledError)
    scheduler.submit(req("2:1"), Requester(2))  # the member's place was given back
    await clock.advance(20)
    assert synth.texts() == ["1:0", "3:0", "2:1"]
    assert scheduler.stats.cancelled == 1


async def test_a_cancelled_result_waiter_leaves_the_ticket_valid(
    clock: FakeClock, build: Build
) -> None:
    synth = FakeSynth(clock, latency=5.0)
    scheduler = build(synth)
    ticket = scheduler.submit(req("1:0"), Requester(1))
    waiter = asyncio.create_task(ticket.result())
    await settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert ticket.state == "running"
    await clock.advance(5)
    assert await outcome(ticket) is AUDIO


async def test_close_fails_queued_cancels_running_and_leaves_no_tasks(
    clock: FakeClock, build: Build
) -> None:
    synth = FakeSynth(clock, latency=100.0)
    scheduler = build(synth, max_concurrency=1)
    tickets = [scheduler.submit(req(f"{user}:0"), Requester(user)) for user in (1, 2, 3)]
    await settle()
    closing = asyncio.create_task(scheduler.close(grace=5))
    await settle()
    assert isinstance(await outcome(tickets[1]), SchedulerClosedError)  # queued: at once
    assert tickets[0].state == "running"  # within its grace
    await clock.advance(5)
    await closing
    for ticket in tickets:
        assert isinstance(await outcome(ticket), SchedulerClosedError)
    assert synth.texts() == ["1:0"]
    assert asyncio.all_tasks() == {asyncio.current_task()}
    with pytest.raises(SchedulerClosedError):
        scheduler.submit(req("4:0"), Requester(4))


async def test_close_lets_a_call_finish_within_the_grace(clock: FakeClock, build: Build) -> None:
    synth = FakeSynth(clock, latency=3.0)
    scheduler = build(synth)
    ticket = scheduler.submit(req("1:0"), Requester(1))
    await settle()
    closing = asyncio.create_task(scheduler.close(grace=10))
    await clock.advance(3)
    assert closing.done()
    assert await outcome(ticket) is AUDIO
    assert asyncio.all_tasks() == {asyncio.current_task()}


# --- positions and ETAs -------------------------------------------------------------------------


async def test_positions_and_etas_are_notified_as_the_queue_moves(
    clock: FakeClock, build: Build
) -> None:
    synth = FakeSynth(clock, latency=3.0)
    scheduler = build(synth, start=False, rpm=2, window=10.0, initial_latency=3.0)
    tickets = [scheduler.submit(req(f"{user}:0"), Requester(user)) for user in range(6)]
    # Two start at once, two a window later, two more a window after that; +3 s to speak.
    assert [t.position for t in tickets] == [1, 2, 3, 4, 5, 6]
    assert [t.eta for t in tickets] == pytest.approx([3, 3, 13, 13, 23, 23])
    assert scheduler.queue_snapshot() == tickets
    seen: list[tuple[str, int | None, float | None]] = []
    tickets[5].add_listener(broken_listener)  # logged, not raised: later listeners still hear
    tickets[5].add_listener(lambda t: seen.append((t.state, t.position, t.eta)))
    scheduler.start()
    await settle()
    assert scheduler.queue_snapshot() == tickets[2:]
    assert [t.position for t in tickets] == [None, None, 1, 2, 3, 4]
    await clock.advance(30)
    assert seen == [
        ("queued", 4, pytest.approx(23)),
        ("queued", 2, pytest.approx(13)),
        ("running", None, pytest.approx(3)),
        ("done", None, None),
    ]
    assert synth.times() == pytest.approx([0, 0, 10, 10, 20, 20])


def test_config_from_settings_maps_the_operator_settings() -> None:
    settings = Settings(
        _env_file=None,
        segmind_rpm=50,
        max_attempts=6,
        backoff_base=2.0,
        backoff_max=30.0,
        user_cooldown=0,
        max_waiting_per_user=5,
        max_queue=40,
        max_concurrency=17,
        segmind_rate_window=4.0,
    )
    config = SchedulerConfig.from_settings(settings)
    assert (config.rpm, config.max_attempts, config.backoff_base, config.backoff_max) == (
        50,
        6,
        2.0,
        30.0,
    )
    assert (config.user_cooldown, config.max_waiting_per_user) == (0, 5)
    assert (config.max_queue, config.max_concurrency) == (40, 17)
    assert (config.window, config.span) == (4.0, 4.04)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="rpm"):
        SchedulerConfig(rpm=0)


# --- with the real client against the fake Segmind server, in real time --------------------------


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def real_scheduler(client: SegmindClient, **config: Any) -> Scheduler:
    config.setdefault("user_cooldown", 0.0)
    # Real time on a shared machine: the first call also opens a TCP connection, so arrivals
    # can lag their recorded starts by tens of milliseconds. (Production: 0.5 s of 60 s.)
    config.setdefault("safety_margin", 0.2)
    config.setdefault("max_waiting_per_user", 10)
    return Scheduler(client.synthesize, SchedulerConfig(**config))


async def test_real_client_three_members_all_delivered_without_429(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeSegmind(rpm_limit=6, rpm_window=1.0, latency=0.05) as fake:
        client = SegmindClient(session, api_key=fake.api_key, base_url=fake.base_url)
        scheduler = real_scheduler(client, rpm=6, window=1.0)
        scheduler.start()
        tickets = [
            scheduler.submit(req(f"Member {user} says line {i}."), Requester(user))
            for i in range(4)
            for user in (1, 2, 3)
        ]
        results = await asyncio.wait_for(asyncio.gather(*(t.result() for t in tickets)), 10)
        await scheduler.close()
    assert all(isinstance(r, Audio) and r.duration > 0 for r in results)
    assert fake.rate_limited_count == 0
    assert fake.tts_calls == 12
    received = [r.received for r in fake.requests]
    for at in received:
        assert sum(at - 1.0 < other <= at for other in received) <= 6


async def test_real_client_429_delays_then_delivers(session: aiohttp.ClientSession) -> None:
    async with FakeSegmind(rpm_limit=6, rpm_window=1.0) as fake:
        fake.enqueue(rate_limited(retry_after=1))
        client = SegmindClient(session, api_key=fake.api_key, base_url=fake.base_url)
        scheduler = real_scheduler(client, rpm=6, window=1.0, max_concurrency=1)
        scheduler.start()
        began = time.monotonic()
        tickets = [
            scheduler.submit(req(f"Member {user} speaks."), Requester(user)) for user in (1, 2, 3)
        ]
        first = await asyncio.wait_for(tickets[0].result(), 10)
        waited = time.monotonic() - began
        rest = await asyncio.wait_for(asyncio.gather(*(t.result() for t in tickets[1:])), 10)
        await scheduler.close()
    assert isinstance(first, Audio)
    assert all(isinstance(r, Audio) for r in rest)
    assert waited >= 1.0  # the Retry-After was honoured
    assert tickets[0].attempts == 2
    assert fake.rate_limited_count == 1
    assert scheduler.stats.rate_limited == 1
    assert fake.statuses() == [429, 200, 200, 200]


async def test_real_client_out_of_credits_halts_and_probe_resumes(
    session: aiohttp.ClientSession,
) -> None:
    halted = asyncio.Event()
    resumed = asyncio.Event()

    async def on_halt(error: SegmindError) -> None:
        halted.set()

    async def on_resume() -> None:
        resumed.set()

    async with FakeSegmind(credits=0) as fake:
        client = SegmindClient(session, api_key=fake.api_key, base_url=fake.base_url)

        async def probe() -> bool:
            return (await client.get_credits()).total > 0

        scheduler = Scheduler(
            client.synthesize,
            SchedulerConfig(user_cooldown=0, halt_probe_interval=0.05),
            probe=probe,
            on_halt=on_halt,
            on_resume=on_resume,
        )
        scheduler.start()
        with pytest.raises(OutOfCreditsError):
            await asyncio.wait_for(scheduler.submit(req("Hello."), Requester(1)).result(), 5)
        await asyncio.wait_for(halted.wait(), 5)
        with pytest.raises(OutOfCreditsError):
            scheduler.submit(req("Hello again."), Requester(2))
        fake.credits = 1.0
        await asyncio.wait_for(resumed.wait(), 5)
        audio = await asyncio.wait_for(
            scheduler.submit(req("Hello again."), Requester(2)).result(), 5
        )
        await scheduler.close()
    assert isinstance(audio, Audio)
    assert fake.credit_checks >= 1
    assert fake.statuses() == [406, 200]
