"""How many processes shared the key lately: the largest count heard, for a while."""

from __future__ import annotations

from bot.synthesis.scheduler.share import Sharers


def test_nobody_heard_means_the_whole_key() -> None:
    assert Sharers(300.0).share(20, 0.0) == (20, 1)


def test_the_largest_count_heard_lately_sets_the_share_at_least_one() -> None:
    sharers = Sharers(300.0)
    sharers.heard(3, 0.0)
    sharers.heard(1, 10.0)  # a lull of the others does not make the key this one's
    assert sharers.share(20, 20.0) == (6, 3)
    assert sharers.share(2, 20.0) == (1, 3)


def test_the_memory_fades_so_a_process_left_alone_regains_the_key() -> None:
    sharers = Sharers(300.0)
    sharers.heard(4, 0.0)
    sharers.heard(2, 200.0)
    assert sharers.count(299.0) == 4
    assert sharers.count(301.0) == 2  # the four lapsed; two were heard since
    sharers.heard(1, 450.0)
    assert sharers.count(501.0) == 1
    assert sharers.count(10_000.0) == 1  # nothing heard for long: alone
