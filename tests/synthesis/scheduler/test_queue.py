"""The fair queue on its own: rotation, front lane, dropping and per-member counts."""

from __future__ import annotations

from bot.synthesis.scheduler.queue import FairQueue, front_key
from tests.synthesis.scheduler.helpers import make_ticket


def test_members_are_picked_round_robin_and_the_served_one_moves_back() -> None:
    queue = FairQueue()
    tickets = [make_ticket(i, user) for i, user in enumerate([1, 1, 1, 2, 2, 3], 1)]
    for ticket in tickets:
        queue.add(ticket)
    assert [t.id for t in queue.round_robin()] == [1, 4, 6, 2, 5, 3]
    assert queue.count() == 6
    picked = [queue.pick(now=0.0) for _ in range(6)]
    assert [t.id for t in picked if t is not None] == [1, 4, 6, 2, 5, 3]
    assert queue.pick(now=0.0) is None
    assert not queue
    assert queue.count() == 0


def test_the_front_lane_serves_429_hits_then_due_retries_before_the_rotation() -> None:
    queue = FairQueue()
    waiting = make_ticket(1, 1)
    queue.add(waiting)
    late_retry, early_retry, hit = make_ticket(2, 2), make_ticket(3, 3), make_ticket(4, 4)
    late_retry.requeue(not_before=50.0)
    early_retry.requeue(not_before=20.0)
    hit.requeue(not_before=None)
    for ticket in (late_retry, early_retry, hit):
        queue.push_front(ticket)
    assert queue.front_lane() == [hit, early_retry, late_retry]
    assert queue.serve_order() == [hit, early_retry, late_retry, waiting]
    assert queue.pick(now=0.0) is hit
    assert queue.pick(now=0.0) is waiting  # the retries are not due yet
    assert queue.pick(now=0.0) is None  # only retries left, none due
    assert queue.next_due() == 20.0
    assert queue.pick(now=20.0) is early_retry
    assert queue.pick(now=49.0) is None
    assert queue.pick(now=50.0) is late_retry


def test_front_key_orders_429_hits_first_then_by_due_time_then_by_age() -> None:
    hit_new, hit_old, retry = make_ticket(9, 1), make_ticket(3, 2), make_ticket(1, 3)
    retry.requeue(not_before=5.0)
    hit_new.requeue(None)
    hit_old.requeue(None)
    assert sorted([retry, hit_new, hit_old], key=front_key) == [hit_old, hit_new, retry]


def test_drop_takes_a_ticket_out_of_either_lane_once() -> None:
    queue = FairQueue()
    first, second, retry = make_ticket(1, 1), make_ticket(2, 1), make_ticket(3, 2)
    queue.add(first)
    queue.add(second)
    queue.add(retry)
    assert queue.pick(now=0.0) is first
    assert queue.pick(now=0.0) is retry
    retry.requeue(not_before=10.0)
    queue.push_front(retry)
    assert queue.drop(retry)
    assert not queue.drop(retry)
    assert queue.drop(second)
    assert not queue.drop(first)  # picked, so no longer queued
    assert not queue
    assert queue.round_robin() == []


def test_active_counts_last_from_add_to_release() -> None:
    queue = FairQueue()
    first, second = make_ticket(1, 7), make_ticket(2, 7)
    queue.add(first)
    queue.add(second)
    assert queue.active(7) == 2
    assert queue.pick(now=0.0) is first
    assert queue.active(7) == 2  # running still counts
    queue.release(first)
    assert queue.active(7) == 1
    queue.release(second)
    assert queue.active(7) == 0
    queue.release(second)  # never below zero
    assert queue.active(7) == 0
