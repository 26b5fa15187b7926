"""The rate window on its own: bursts, the sliding limit, the 429 pause and the penalty."""

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


def test_a_429_with_a_reset_pauses_until_it_and_lowers_the_rate_for_two_windows() -> None:
    rates = window(rpm=5, window=10.0, penalty_factor=0.8)
    assert rates.pause_for_429(now=100.0, retry_after=7.0, jitter=0.5) == 7.5
    assert rates.paused_until(100.0) == 107.5
    assert rates.earliest_start(100.0) == 107.5
    assert rates.effective_rpm(100.0) == 4
    assert rates.paused_until(107.5) is None
    assert rates.earliest_start(108.0) == 108.0
    assert rates.effective_rpm(119.9) == 4
    assert rates.effective_rpm(120.0) == 5


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


def test_during_the_penalty_the_reduced_rate_applies_until_it_ends() -> None:
    rates = window(rpm=2, window=10.0, penalty_factor=0.5, penalty_duration=15.0)
    rates.record_start(0.0)
    rates.pause_for_429(now=0.0, retry_after=0.0, jitter=0.0)
    # One call per span while penalised: the next fits at 10, the one after only once the
    # penalty ends at 15 (by then the full rate of two applies again).
    assert rates.rate_ready(0.0) == 10.0
    assert rates.rate_ready(0.0, [0.0, 10.0]) == 15.0
    assert rates.rate_ready(15.0, [0.0, 10.0]) == 15.0
