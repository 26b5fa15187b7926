"""Issue 11, point 9: the scheduler learns the key's real limit from 429s (and their absence).

An owner types 50 on a 5-a-minute key: after the first window fewer than 10 % of calls may be
answered 429 and goodput must stay at 90 % of what the key allows, with and without reset
headers; the operator is told once.
"""

from __future__ import annotations

import itertools
import logging

import pytest

from bot.speech.access import Requester
from bot.synthesis.scheduler import Scheduler, SchedulerConfig, Ticket
from bot.synthesis.scheduler.learn import MAX_HOLD_WINDOWS, LimitLearner
from tests.synthesis.scheduler.fakes import AUDIO, Build, FakeClock, KeyLimitedSynth, outcome, req

KEY_LIMIT = 5
WINDOW = 60.0


@pytest.mark.parametrize("reset_headers", [True, False], ids=["reset", "no-reset"])
async def test_a_mistyped_rpm_is_learned_and_reported_once(
    clock: FakeClock, build: Build, caplog: pytest.LogCaptureFixture, reset_headers: bool
) -> None:
    synth = KeyLimitedSynth(
        clock, limit=KEY_LIMIT, window=WINDOW, latency=18.0, reset_headers=reset_headers
    )
    learned: list[int] = []
    scheduler = build(
        synth,
        rpm=50,
        window=WINDOW,
        safety_margin=None,
        max_queue=500,
        job_timeout=3600.0,
        on_limit_learned=learned.append,
    )
    tickets = [scheduler.submit(req(f"{user}:0"), Requester(user)) for user in range(150)]
    with caplog.at_level(logging.WARNING):
        for _ in range(200):
            await clock.advance(WINDOW)
            if all(t.state in ("done", "failed") for t in tickets):
                break
    assert [await outcome(t) for t in tickets] == [AUDIO] * len(tickets)

    log = [(at - clock.origin, status) for at, status in synth.log]
    after = [status for at, status in log if at >= WINDOW]
    refused = after.count(429) / len(after)
    ok_times = [at for at, status in log if status == 200 and at >= WINDOW]
    span = ok_times[-1] - WINDOW
    goodput = len(ok_times) / (KEY_LIMIT * (span // WINDOW + 1))
    assert refused < 0.10, (refused, after.count(429), len(after))
    assert goodput >= 0.90, goodput
    assert scheduler.effective_rpm <= 6
    assert learned == [KEY_LIMIT]
    told = [r for r in caplog.records if "SEGMIND_RPM is 50" in r.getMessage()]
    assert len(told) == 1
    assert told[0].levelno == logging.WARNING
    assert "about 5 per 60 s" in told[0].getMessage()


async def run_mistyped_queue(
    clock: FakeClock, build: Build, *, reset_headers: bool, learned: list[int]
) -> tuple[KeyLimitedSynth, Scheduler, list[Ticket]]:
    """SEGMIND_RPM=50 on a 5-a-minute key; 10 members queue 3 messages each as fast as the
    bot's defaults let them (a 5 s cooldown, 3 waiting each): 10 calls go out at once, the
    other 20 queue up while the first 429s' pause is in force. Runs until the first window's
    end; the caller drives the rest."""
    synth = KeyLimitedSynth(
        clock, limit=KEY_LIMIT, window=WINDOW, latency=18.0, reset_headers=reset_headers
    )
    scheduler = build(
        synth,
        rpm=50,
        window=WINDOW,
        safety_margin=None,
        user_cooldown=5.0,
        max_waiting_per_user=3,
        job_timeout=3600.0,
        on_limit_learned=learned.append,
    )
    tickets: list[Ticket] = []
    for message in range(3):
        await clock.advance_to(5.0 * message)
        tickets += [
            scheduler.submit(req(f"{user}:{message}"), Requester(user)) for user in range(10)
        ]
    await clock.advance_to(WINDOW - 0.5)
    return synth, scheduler, tickets


@pytest.mark.parametrize("reset_headers", [True, False], ids=["reset", "no-reset"])
async def test_a_mistyped_rpm_queued_by_members_is_learned_within_the_first_window(
    clock: FakeClock, build: Build, caplog: pytest.LogCaptureFixture, reset_headers: bool
) -> None:
    learned: list[int] = []
    with caplog.at_level(logging.WARNING):
        synth, scheduler, tickets = await run_mistyped_queue(
            clock, build, reset_headers=reset_headers, learned=learned
        )
        # The first burst (10 calls, 5 refused) filled a window of 50 only to 10: several
        # refusals there are the limit, not timing, and the 5 let through are its measure. So
        # the 20 queued behind it are not sent to be refused too when its pause ends.
        assert scheduler.effective_rpm == KEY_LIMIT
        assert [status for _, status in synth.log].count(429) == 10 - KEY_LIMIT
        for _ in range(30):
            await clock.advance(WINDOW)
            if all(t.state in ("done", "failed") for t in tickets):
                break
    assert [await outcome(t) for t in tickets] == [AUDIO] * len(tickets)  # nothing lost
    log = [(at - clock.origin, status) for at, status in synth.log]
    after = [status for at, status in log if at >= WINDOW]
    assert after.count(429) / len(after) < 0.10, log
    ok_times = [at for at, status in log if status == 200 and at >= WINDOW]
    goodput = len(ok_times) / (KEY_LIMIT * ((ok_times[-1] - WINDOW) // WINDOW + 1))
    assert goodput >= 0.90, log
    assert learned == [KEY_LIMIT]  # the operator is told once
    told = [r for r in caplog.records if "SEGMIND_RPM is 50" in r.getMessage()]
    assert len(told) == 1


async def test_a_pause_ends_by_releasing_the_queue_at_the_learned_rate(
    clock: FakeClock, build: Build
) -> None:
    learned: list[int] = []
    synth, scheduler, _ = await run_mistyped_queue(
        clock, build, reset_headers=True, learned=learned
    )
    await clock.advance(2 * WINDOW)
    starts = [at - clock.origin for at, _ in synth.log if at - clock.origin >= 1.0]
    # The pause the first burst's 429s set ends when the calls it let through age out (60 s):
    # its queue of 25 then goes out one call per span / 5 rate, not all at that instant.
    assert len(starts) >= KEY_LIMIT + 1
    assert starts[0] == pytest.approx(WINDOW, abs=1.0)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) >= scheduler.config.span / KEY_LIMIT - 1e-6, starts
    assert all(status == 200 for at, status in synth.log if at - clock.origin >= 1.0)


def reported(limits: LimitLearner) -> int | None:
    """Read through a call, so mypy does not keep an earlier narrowing of `report`."""
    return limits.report


def rate(limits: LimitLearner) -> int:
    """Read through a call, so mypy does not keep an earlier narrowing of `rpm`."""
    return limits.rpm


def learner(**config: float) -> LimitLearner:
    return LimitLearner(SchedulerConfig(safety_margin=0.0, **config))  # type: ignore[arg-type]


def test_a_burst_of_refusals_brings_the_rate_down_to_what_was_let_through() -> None:
    limits = learner(rpm=50, window=60.0)
    for ticket in range(50):
        limits.started(ticket, 0.0)
    for ticket in range(5):
        limits.ended(ticket)  # accepted (still running or done)
    for ticket in range(5, 50):
        limits.refused(ticket, 1.0)
    assert limits.rpm == 5  # not 50 * 0.8 ** 45 = 1: one burst, one congestion event


def test_a_lone_429_is_blamed_on_timing_once_then_cuts_by_the_factor() -> None:
    limits = learner(rpm=50, window=60.0, penalty_factor=0.8)
    limits.started(1, 0.0)
    limits.ended(1)
    limits.started(2, 5.0)
    assert limits.refused(
        2, 6.0
    )  # blamed on timing: one refusal at a new rate: a late arrival, perhaps
    assert limits.rpm == 50
    limits.started(3, 7.0)
    assert not limits.refused(3, 8.0)  # again at the same rate: the limit
    assert limits.rpm == 40  # cut by the factor, not to the 1 call we happened to make


def test_the_rate_rises_only_after_a_hold_with_demand_and_failed_probes_wait_longer() -> None:
    limits = learner(rpm=10, window=10.0)  # hold: two windows
    for ticket in range(10):
        limits.started(ticket, 0.0)
    for ticket in range(5, 10):
        limits.refused(ticket, 0.5)  # five refusals are too many to blame on timing
    assert limits.rpm == 5
    assert not limits.tick(30.0)  # no demand held back: no evidence, no rise
    limits.held_back(1.0)
    assert not limits.tick(20.0)  # the hold is counted from the decrease at 0.5
    assert limits.tick(20.5)
    assert limits.rpm == 6  # +max(1, 5 // 4)
    for ticket in range(100, 106):
        limits.started(ticket, 21.0)
    # Refused when the server had let through only the 5 of the level before: answered, not
    # timing. Back to 5, which is what the server holds, so the refused call's slot goes back.
    assert limits.refused(105, 22.5)
    assert limits.rpm == 5
    assert limits.report == 5
    assert limits.hold == 40.0
    limits.held_back(22.5)
    assert not limits.tick(22.5 + 39.0)
    assert limits.tick(22.5 + 40.0)


def test_probes_never_wait_longer_than_the_cap() -> None:
    limits = learner(rpm=10, window=10.0)
    for ticket in range(1, 13):
        at = ticket * 1e6
        limits.held_back(at)
        limits.tick(at)
        limits.started(ticket, at)
        limits.refused(ticket, at)
        limits.started(-ticket, at + 1)
        limits.refused(-ticket, at + 1)
    assert limits.hold == MAX_HOLD_WINDOWS * 10.0


def test_a_lowered_rate_is_reported_once_when_it_has_settled_for_a_span() -> None:
    limits = learner(rpm=50, window=60.0)
    for ticket in range(50):
        limits.started(ticket, 0.0)
    for ticket in range(5, 50):
        limits.refused(ticket, 1.0)
    assert reported(limits) is None  # refusals may still be coming back
    limits.tick(60.9)
    assert reported(limits) is None
    limits.tick(61.0)
    assert reported(limits) == 5
    limits.report = None  # taken by the scheduler
    limits.tick(500.0)
    assert reported(limits) is None  # once


def test_lone_refusals_far_apart_are_each_blamed_on_timing() -> None:
    limits = learner(rpm=50, window=60.0)
    limits.started(1, 0.0)
    assert limits.refused(1, 1.0)
    limits.started(2, 200.0)  # more than two spans later
    assert limits.refused(2, 201.0)
    assert rate(limits) == 50
    limits.started(3, 210.0)  # but a second one soon after counts
    assert not limits.refused(3, 211.0)
    assert rate(limits) == 40


def test_several_refusals_are_blamed_on_timing_only_in_a_window_filled_close_to_the_rate() -> None:
    limits = learner(rpm=50, window=60.0)
    for ticket in range(10):  # a first burst of 10 on a key that allows 5
        limits.started(ticket, 0.0)
    for ticket in range(5):
        limits.ended(ticket)
    assert limits.refused(5, 0.1)  # the first is forgiven: a stray 429 never lowers the rate
    assert rate(limits) == 50
    # The second cannot be timing: a late arrival tips the server over only in a window
    # filled close to the rate. The calls not refused (so far) are the limit's measure, and
    # each refusal that sets the rate to it gives its slot back (the server did not count it).
    assert limits.refused(6, 0.1)
    assert rate(limits) == 8
    assert all(limits.refused(ticket, 0.1) for ticket in range(7, 10))
    assert rate(limits) == 5  # what the server let through, within the first window

    full = learner(rpm=50, window=60.0)
    for ticket in range(50):  # the rate filled: a cold burst's late arrivals can tip it over
        full.started(ticket, 0.0)
    assert all(full.refused(ticket, 0.5) for ticket in range(45, 50))  # 50 // 10 of them
    assert rate(full) == 50
    full.refused(44, 0.5)  # one more than timing explains: the limit
    assert rate(full) == 44


def test_a_limit_measured_twice_under_demand_is_taken_as_is() -> None:
    limits = learner(rpm=50, window=60.0)
    for ticket in range(10):  # a key of 9: a burst of 10, one refused, forgiven
        limits.started(ticket, 0.0)
    assert limits.refused(9, 0.1)
    assert rate(limits) == 50
    # After the pause, the queue goes out evenly and the rate holds the rest back.
    for ticket in range(100, 110):
        at = 61.0 + 1.2 * (ticket - 100)
        limits.held_back(at)
        limits.started(ticket, at)
    assert limits.refused(109, 72.0)
    # 9 let through, as in the first window, while calls were waiting: the key's limit,
    # not a stray to cut the rate by a factor for (two lone 429s with no demand still are).
    assert rate(limits) == 9


def test_with_other_processes_on_the_key_a_thin_window_of_our_own_proves_nothing() -> None:
    limits = LimitLearner(SchedulerConfig(rpm=50, window=60.0, safety_margin=0.0), alone=False)
    for ticket in range(10):  # our share of the cluster's calls
        limits.started(ticket, 0.0)
    assert all(limits.refused(ticket, 0.1) for ticket in range(5, 10))  # timing, as before
    assert rate(limits) == 50


def provisional(limits: LimitLearner) -> bool:
    """Read through a call, so mypy does not keep an earlier narrowing of `provisional`."""
    return limits.provisional


def cluster_learner() -> LimitLearner:
    return LimitLearner(SchedulerConfig(rpm=20, window=60.0, safety_margin=0.0), alone=False)


def test_a_limit_learned_while_the_shared_window_is_out_of_reach_is_provisional() -> None:
    limits = cluster_learner()
    limits.part()
    for ticket in range(20):  # alone at the whole key's rate: the other process's calls
        limits.started(ticket, 0.0)  # come back as this one's 429s
    for ticket in range(8, 20):
        limits.refused(ticket, 1.0)
    assert rate(limits) == 8  # paced at its share while it is alone
    assert provisional(limits)
    limits.tick(200.0)
    assert reported(limits) is None  # never reported: a share, not the key's limit
    # The cluster paces at 20: the share is dropped, after one more window at it (the key
    # still counts the calls made alone, which the shared window never saw).
    assert not limits.rejoin(20, 300.0)
    assert not limits.follow(20, 359.0)
    assert rate(limits) == 8
    limits.tick(359.5)
    assert reported(limits) is None
    assert limits.follow(20, 361.0)
    assert rate(limits) == 20
    assert not provisional(limits)
    limits.tick(500.0)
    assert reported(limits) is None


def test_after_an_outage_refusals_of_calls_counted_with_the_outage_prove_nothing() -> None:
    limits = cluster_learner()
    limits.part()
    limits.rejoin(20, 100.0)
    for ticket in range(20):  # the key still counts the calls paced alone until 160
        limits.started(ticket, 101.0)
    assert all(limits.refused(ticket, 101.5) for ticket in range(5, 20))
    assert rate(limits) == 20
    for ticket in range(100, 120):  # a window after the return: evidence again
        limits.started(ticket, 170.0)
    limits.refused(119, 170.5)
    for ticket in range(110, 119):
        limits.refused(ticket, 170.5)
    assert rate(limits) < 20


def test_the_cluster_rate_is_followed_down_and_up() -> None:
    limits = cluster_learner()
    assert limits.follow(12, 0.0)  # another process learned 12
    assert rate(limits) == 12
    assert limits.follow(15, 10.0)  # one probed upward
    assert rate(limits) == 15
    assert limits.follow(50, 20.0)  # the learned limit lapsed: SEGMIND_RPM, never past it
    assert rate(limits) == 20
    assert not limits.follow(20, 30.0)


def test_alone_at_its_share_a_process_probes_upward_when_no_429_says_otherwise() -> None:
    limits = cluster_learner()  # 20 a window, the hold two windows (120 s)
    limits.part(10, 0.0, hold=300.0)  # one of two processes sharing the key
    assert rate(limits) == 10
    assert provisional(limits)
    limits.held_back(200.0)
    assert not limits.tick(200.0)  # not before the hold: its peer would probe too
    limits.held_back(301.0)
    assert limits.tick(301.0)  # its peer is gone too: the key comes back, step by step
    assert rate(limits) == 12
    limits.held_back(422.0)
    assert limits.tick(422.0)  # the probe held: the next after the usual hold
    assert rate(limits) == 15
    assert not limits.rejoin(20, 430.0)  # one more window at its share, then the cluster's
    assert limits.follow(20, 491.0)
    assert rate(limits) == 20
    assert reported(limits) is None


def test_just_back_a_lower_cluster_rate_is_followed_at_once() -> None:
    limits = cluster_learner()
    limits.part(10, 0.0)
    assert not limits.rejoin(20, 100.0)  # kept at 10 for a window
    assert limits.follow(8, 101.0)  # another process learned 8 meanwhile: at once
    assert rate(limits) == 8
