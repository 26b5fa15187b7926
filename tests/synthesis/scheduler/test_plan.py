"""Planning and cooldowns on their own: estimated starts from a queue and a rate window."""

from __future__ import annotations

import pytest

from bot.synthesis.scheduler import SchedulerConfig
from bot.synthesis.scheduler.cooldowns import Cooldowns
from bot.synthesis.scheduler.plan import LATENCY_EWMA_ALPHA, LatencyEstimate, plan
from bot.synthesis.scheduler.queue import FairQueue
from bot.synthesis.scheduler.window import RateWindow
from tests.synthesis.scheduler.helpers import make_ticket


def test_the_plan_waits_for_concurrency_then_rate_slots_in_serve_order() -> None:
    config = SchedulerConfig(rpm=2, window=10.0, safety_margin=0.0)
    queue, rates = FairQueue(), RateWindow(config)
    tickets = [make_ticket(i, user) for i, user in enumerate([1, 1, 2, 3], 1)]
    for ticket in tickets:
        queue.add(ticket)
    planned = plan(queue, rates, now=0.0, running=[], latency=3.0, limit=1)
    # One at a time (3 s each), and at most two starts in any 10 s.
    assert [(t.id, at) for t, at in planned] == [(1, 0.0), (3, 3.0), (4, 10.0), (2, 13.0)]
    assert queue.count() == 4  # planning takes nothing out
    assert list(rates.starts) == []


def test_the_plan_counts_running_calls_and_puts_due_retries_first() -> None:
    config = SchedulerConfig(rpm=10, window=10.0, safety_margin=0.0)
    queue, rates = FairQueue(), RateWindow(config)
    running, waiting, retry = make_ticket(1, 1), make_ticket(2, 2), make_ticket(3, 3)
    running.mark_running(0.0, ready_at=4.0)
    rates.record_start(0.0)
    queue.add(waiting)
    retry.requeue(not_before=1.0)
    queue.push_front(retry)
    planned = plan(queue, rates, now=0.0, running=[running], latency=4.0, limit=1)
    # The running call frees the only slot at 4; the retry is due by then, so it goes first.
    assert [(t.id, at) for t, at in planned] == [(3, 4.0), (2, 8.0)]


def test_the_latency_estimate_leans_toward_the_newest_call() -> None:
    estimate = LatencyEstimate(20.0)
    estimate.observe(10.0)
    assert estimate.seconds == pytest.approx(20.0 - LATENCY_EWMA_ALPHA * 10.0)


def test_cooldowns_count_down_and_are_replaced_by_a_new_start() -> None:
    cooldowns = Cooldowns()
    assert cooldowns.remaining(1, now=0.0) == 0.0
    cooldowns.start(1, now=0.0, length=5.0)
    assert cooldowns.remaining(1, now=2.0) == pytest.approx(3.0)
    assert cooldowns.remaining(1, now=9.0) == 0.0
    assert cooldowns.remaining(2, now=2.0) == 0.0
    cooldowns.start(1, now=9.0, length=30.0)
    assert cooldowns.remaining(1, now=10.0) == pytest.approx(29.0)
