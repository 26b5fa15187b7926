"""A ticket on its own: what listeners hear, how it finishes, and withdrawing through a callback."""

from __future__ import annotations

import asyncio

import pytest

from bot.audio import AudioFormat, encode_wav, probe
from bot.errors import ServerError
from bot.synthesis.scheduler import Ticket
from tests.signals import tone
from tests.synthesis.scheduler.helpers import StillClock, make_ticket

AUDIO = probe(encode_wav(tone(0.05)), AudioFormat.WAV)


def heard(ticket: Ticket) -> list[tuple[str, int | None, float | None]]:
    seen: list[tuple[str, int | None, float | None]] = []
    ticket.add_listener(lambda t: seen.append((t.state, t.position, t.eta)))
    return seen


def test_repr_never_shows_the_text() -> None:
    ticket = make_ticket(5, 42, text="my secret message")
    assert "secret" not in repr(ticket)
    assert repr(ticket) == "<Ticket 5 user=42 queued pos=None>"


def test_cancel_asks_the_callback_it_was_made_with() -> None:
    asked: list[Ticket] = []

    def withdraw(ticket: Ticket) -> bool:
        asked.append(ticket)
        return True

    ticket = make_ticket(1, 1, withdraw=withdraw)
    assert ticket.cancel()
    assert asked == [ticket]


def test_listeners_hear_place_changes_and_eta_moves_of_a_second_or_more() -> None:
    clock = StillClock(1000.0)
    ticket = make_ticket(1, 1, clock=clock)
    seen = heard(ticket)
    ticket.update_plan(3, 1010.0)
    ticket.update_plan(3, 1010.9)  # under ETA_NOTIFY_STEP: not worth a message edit
    assert ticket.eta == pytest.approx(10.9)
    ticket.update_plan(3, 1011.0)  # a second from what listeners last heard
    ticket.update_plan(2, 1011.0)
    assert [(state, position) for state, position, _ in seen] == [
        ("queued", 3),
        ("queued", 3),
        ("queued", 2),
    ]
    assert [eta for _, _, eta in seen] == pytest.approx([10, 11, 11])


def test_an_attempt_and_a_requeue_move_the_scheduler_side_fields() -> None:
    ticket = make_ticket(1, 1)
    seen = heard(ticket)
    assert (ticket.not_before, ticket.started_at, ticket.expires_at) == (None, 0.0, 10_000.0)
    ticket.mark_running(1000.0, ready_at=1020.0)
    assert (ticket.state, ticket.attempts, ticket.started_at) == ("running", 1, 1000.0)
    assert [(state, position) for state, position, _ in seen] == [("running", None)]
    assert [eta for _, _, eta in seen] == pytest.approx([20])
    assert ticket.count_failure() == 1
    ticket.requeue(not_before=1030.0)
    assert (ticket.state, ticket.not_before) == ("queued", 1030.0)
    assert len(seen) == 1  # listeners hear of it with the new place, from update_plan
    assert not ticket.due(1029.9)
    assert ticket.due(1030.0)
    ticket.mark_running(1030.0, ready_at=1050.0)
    assert (ticket.attempts, ticket.not_before, ticket.started_at) == (2, None, 1030.0)
    assert ticket.count_failure() == 2


async def test_finish_fail_and_withdraw_settle_the_result() -> None:
    done, failed, withdrawn = make_ticket(1, 1), make_ticket(2, 1), make_ticket(3, 1)
    seen = heard(withdrawn)
    done.finish(AUDIO)
    error = ServerError(status=500)
    failed.fail(error)
    withdrawn.mark_withdrawn()
    assert await done.result() is AUDIO
    assert (done.state, done.eta, done.position) == ("done", None, None)
    with pytest.raises(ServerError) as info:
        await failed.result()
    assert info.value is error
    assert failed.state == "failed"
    assert not failed.cancelled
    with pytest.raises(asyncio.CancelledError):
        await withdrawn.result()
    assert (withdrawn.state, withdrawn.cancelled) == ("failed", True)
    assert seen == [("failed", None, None)]
