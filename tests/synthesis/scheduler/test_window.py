"""The rate window on its own: bursts, the sliding limit, the rate in force and the 429 pause."""

from __future__ import annotations

from typing import Any

import pytest

from bot.synthesis.scheduler import SchedulerConfig
from bot.synthesis.scheduler.window import RateWindow


def window(**config: Any) -> RateWindow:
    config.setdefault("safety_margin", 0.0)
    return RateWindow(SchedulerConfig(**config))


def test_bursts_to_the_limit_then_waits_for_the_oldest_start_to_leave_the_span() -> None:
    rates = window(rpm=3, window=10.0, safety_margin=0.5)
    for at in (0.0, 1.0, 2.0):
        assert rates.rate_ready(at) == at
        rates.record_start(at)
    assert rates.rate_ready(3.0) == pytest.approx(10.5)  # the first start + span
    assert rates.rate_ready(12.0) == 12.0


def test_prune_forgets_starts_a_whole_span_old() -> None:
    rates = window(rpm=2, window=10.0)
    rates.record_start(0.0)
    rates.record_start(5.0)
    rates.prune(9.9)
    assert list(rates.starts) == [0.0, 5.0]
    rates.prune(10.0)
    assert list(rates.starts) == [5.0]


def test_rate_ready_can_plan_on_a_simulated_log_without_touching_the_real_one() -> None:
    rates = window(rpm=1, window=10.0)
    rates.record_start(0.0)
    assert rates.rate_ready(0.0, [0.0, 10.0]) == 20.0
    assert rates.rate_ready(0.0) == 10.0
    assert list(rates.starts) == [0.0]


def test_a_429_with_a_reset_pauses_until_it() -> None:
    rates = window(rpm=5, window=10.0)
    assert rates.pause_for_429(now=100.0, retry_after=7.0, jitter=0.5) == 7.5
    assert rates.paused_until(100.0) == 107.5
    assert rates.earliest_start(100.0) == 107.5
    assert rates.paused_until(107.5) is None
    assert rates.earliest_start(108.0) == 108.0


def test_a_reset_longer_than_any_queue_timeout_is_honoured_in_full() -> None:
    rates = window(rpm=5, window=60.0, job_timeout=840.0)
    assert rates.pause_for_429(now=0.0, retry_after=3600.0, jitter=0.0) == 3600.0
    assert rates.earliest_start(0.0) == 3600.0


def test_429s_without_a_reset_double_the_pause_until_a_success() -> None:
    rates = window(rpm=5, window=60.0, backoff_max=60.0)
    waits = [rates.pause_for_429(now=0.0, retry_after=None, jitter=0.0) for _ in range(4)]
    assert waits == [12.0, 24.0, 48.0, 60.0]  # window/rpm, doubled, capped
    rates.note_success()
    assert rates.pause_for_429(now=0.0, retry_after=None, jitter=0.0) == 12.0


def test_a_shorter_pause_never_cuts_a_longer_one_short() -> None:
    rates = window()
    rates.pause_for_429(now=0.0, retry_after=30.0, jitter=0.0)
    rates.pause_for_429(now=1.0, retry_after=5.0, jitter=0.0)
    assert rates.paused_until(1.0) == 30.0


def test_429s_of_one_burst_back_off_once_not_once_each() -> None:
    rates = window(rpm=5, window=60.0, backoff_max=60.0)
    # Five calls started at 0 are refused at 1: one back-off of 60/5 s, not a doubling each.
    waits = [rates.pause_for_429(1.0, None, 0.0, started_at=0.0) for _ in range(5)]
    assert waits == [12.0] * 5
    # A call started after that pause began and refused too is a fresh 429: it doubles.
    assert rates.pause_for_429(14.0, None, 0.0, started_at=13.0) == 24.0


def test_the_rate_in_force_decides_the_sliding_limit() -> None:
    rates = window(rpm=2, window=10.0)
    rates.record_start(0.0)
    assert rates.rate_ready(0.0) == 0.0
    rates.rpm = 1  # lowered by what the scheduler learned
    assert rates.rate_ready(0.0) == 10.0
    assert rates.rate_ready(0.0, [0.0, 10.0]) == 20.0


def test_after_a_pause_the_queue_is_released_evenly_at_the_rate_in_force() -> None:
    rates = window(rpm=5, window=10.0)
    for _ in range(5):
        rates.record_start(0.0)
    rates.pause_for_429(now=1.0, retry_after=9.0, jitter=0.0)  # until the burst ages out
    released = []
    for _ in range(7):
        at = rates.rate_ready(rates.earliest_start(10.0))
        rates.prune(at)
        released.append(at)
        rates.record_start(at)
    # One at the pause's end, then one per span / rpm: never the whole window at that instant.
    # After 5 since the pause the sliding window keeps them that far apart by itself.
    assert released == pytest.approx([10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 22.0])


def test_the_plan_sees_the_even_release_after_a_pause_as_the_dispatcher_does() -> None:
    rates = window(rpm=4, window=8.0)
    rates.pause_for_429(now=0.0, retry_after=3.0, jitter=0.0)
    rates.record_start(3.0)
    simulated = rates.starts
    for _ in range(3):
        simulated.append(rates.rate_ready(3.0, simulated))
    assert simulated == pytest.approx([3.0, 5.0, 7.0, 9.0])
    assert rates.rate_ready(3.0) == pytest.approx(5.0)  # the real log was left alone


def test_the_even_release_lapses_after_a_span_with_no_call() -> None:
    rates = window(rpm=3, window=10.0)
    rates.pause_for_429(now=0.0, retry_after=5.0, jitter=0.0)
    rates.prune(14.9)
    rates.record_start(14.9)
    assert rates.rate_ready(14.9) == pytest.approx(14.9 + 10.0 / 3)  # still releasing evenly
    later = window(rpm=3, window=10.0)
    later.pause_for_429(now=0.0, retry_after=5.0, jitter=0.0)
    later.prune(15.0)  # a whole span since the pause ended, and nobody called
    later.record_start(15.0)
    assert later.rate_ready(15.0) == 15.0  # a burst after a quiet span goes at once again


def test_in_a_cluster_the_even_release_lapses_a_span_after_the_pause() -> None:
    # This process's starts are only its share of the shared window: they never reach the
    # rate, so spacing them evenly for good would cost it its turn to the others.
    rates = RateWindow(SchedulerConfig(rpm=4, window=8.0, safety_margin=0.0), shared=True)
    rates.pause_for_429(now=0.0, retry_after=2.0, jitter=0.0)
    for at in (2.0, 4.0, 9.5):  # two of four at the even release, then one later
        rates.prune(at)
        rates.record_start(at)
    rates.prune(9.9)
    assert rates.rate_ready(9.9) == pytest.approx(9.5 + 8.0 / 4)  # within a span: evenly
    rates.prune(10.0)  # a span after the pause's end
    assert rates.rate_ready(10.0) == 10.0
