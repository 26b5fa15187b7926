"""The queue-wait histogram the scheduler keeps without a metrics library: Prometheus'
`le` buckets (a value on a bound counts in that bound's bucket), cumulative, with +Inf."""

from __future__ import annotations

import math

import pytest

from bot.synthesis.scheduler import SchedulerConfig
from bot.synthesis.scheduler.tally import QUEUE_WAIT_BUCKETS, Tally


def test_values_fall_in_the_first_bucket_at_or_above_them_and_counts_accumulate() -> None:
    tally = Tally((1.0, 5.0))
    for value in (0.0, 1.0, 1.5, 5.0, 7.0, 100.0):
        tally.observe(value)
    assert tally.cumulative() == [(1.0, 2), (5.0, 4), (math.inf, 6)]
    assert tally.count == 6
    assert tally.sum == pytest.approx(114.5)


def test_an_empty_tally_reads_as_zeros() -> None:
    tally = Tally(QUEUE_WAIT_BUCKETS)
    assert [count for _, count in tally.cumulative()] == [0] * (len(QUEUE_WAIT_BUCKETS) + 1)
    assert (tally.count, tally.sum) == (0, 0.0)


@pytest.mark.parametrize("bounds", [(5.0, 1.0), (1.0, 1.0), (1.0, math.inf)])
def test_bounds_must_be_finite_distinct_and_increasing(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="bounds"):
        Tally(bounds)


def test_the_queue_buckets_reach_the_requests_deadline() -> None:
    assert QUEUE_WAIT_BUCKETS[-1] >= SchedulerConfig().job_timeout
