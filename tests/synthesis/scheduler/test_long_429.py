"""Issue 11, point 8: a 429 whose reset is longer than a request may wait.

The pause honours the reset in full; tickets that cannot start before their own deadline end
at once with an error that says when speech is expected back; the others keep their place and
hear the new time. Nothing expires silently minutes later.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.errors import RequestExpiredError
from bot.speech.access import Requester
from bot.synthesis.scheduler import Scheduler, SchedulerConfig, Ticket
from bot.synthesis.scheduler.deadline import PausedTooLongError
from tests.synthesis.scheduler.fakes import (
    AUDIO,
    Build,
    FakeClock,
    FakeSynth,
    limited,
    outcome,
    req,
)

WALL = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


async def test_a_long_reset_ends_only_who_cannot_wait_and_tells_the_rest(
    clock: FakeClock, build: Build
) -> None:
    synth = FakeSynth(clock, latency=1.0)
    synth.plan("0:0", limited(600.0))
    # Two calls a minute (a lone 429 is blamed on timing, so the rate stays): after the pause
    # (until 601) the queue is released evenly at that rate, 601 (0:0 again), 631, 661, 691,
    # ... 811, 841; the deadline is 840, so 7 of the 8 waiting can make it and 1 cannot.
    scheduler = build(synth, rpm=2, window=60.0, job_timeout=840.0, initial_latency=1.0)
    first = scheduler.submit(req("0:0"), Requester(0))
    await clock.advance(0.5)  # 0:0 running (one of the two calls of this minute)
    tickets = [scheduler.submit(req(f"{user}:0"), Requester(user)) for user in range(1, 10)]
    heard: dict[int, list[float | None]] = {t.id: [] for t in tickets}
    for ticket in tickets:
        ticket.add_listener(lambda t: heard[t.id].append(t.eta))
    await clock.advance_to(1)  # 1:0 ran at 0.5 too; the 429 for 0:0 arrives now
    assert scheduler.paused_until == pytest.approx(clock.origin + 601)
    ended = [t for t in [first, *tickets] if t.state == "failed"]
    assert len(ended) == 1
    assert first.state == "queued"  # the hit one keeps its place at the front
    for ticket in ended:
        error = await outcome(ticket)
        assert isinstance(error, PausedTooLongError)
        assert isinstance(error, RequestExpiredError)
        assert "in 10 min" in error.user_message
        assert "UTC" in error.user_message
    assert scheduler.stats.expired == 1
    waiting = [t for t in tickets if t.state == "queued"]
    assert len(waiting) == 7
    for ticket in waiting:  # told the new time, at once
        eta = heard[ticket.id][-1]
        assert eta is not None
        assert eta >= 600
    await clock.advance_to(900)
    assert scheduler.stats.expired == 1  # nobody expired silently later
    assert [await outcome(t) for t in [first, *waiting]] == [AUDIO] * 8
    assert synth.times()[2:] == pytest.approx([601, 631, 661, 691, 721, 751, 781, 811])


async def test_a_reset_past_every_deadline_ends_everyone_at_once(clock: FakeClock) -> None:
    synth = FakeSynth(clock, latency=1.0)
    synth.plan("0:0", limited(900.0))
    scheduler = Scheduler(
        synth,
        SchedulerConfig(rpm=5, user_cooldown=0, safety_margin=0.0),
        clock=clock,
        rng=lambda: 0.0,
        wall_clock=lambda: WALL,
    )
    scheduler.start()
    tickets = [scheduler.submit(req(f"{user}:0"), Requester(user)) for user in range(8)]
    try:
        await clock.advance_to(1.5)
        assert all(t.state in ("done", "failed") for t in tickets)
        late: list[Ticket] = [t for t in tickets if t.state == "failed"]
        assert len(late) == 4  # the hit one and the three that could not start with it
        error = await outcome(late[0])
        assert isinstance(error, PausedTooLongError)
        back = datetime.fromtimestamp(WALL + 900, UTC).strftime("%H:%M")
        assert f"at about {back} UTC (in 15 min)" in error.user_message
        assert error.resume_at == pytest.approx(WALL + 900)
    finally:
        await scheduler.close(grace=0)


def test_the_pause_is_told_in_the_members_language() -> None:
    error = PausedTooLongError(90 * 60 + 1, wall_now=WALL)
    back = datetime.fromtimestamp(WALL + 90 * 60 + 1, UTC).strftime("%H:%M")
    assert f"at about {back} UTC (in 91 min)" in error.localized("en-US")
    assert f"gegen {back} UTC wieder da (in 91 Min.)" in error.localized("de")
    assert f"{back} UTC ごろ（91 分後）" in error.localized("ja")
