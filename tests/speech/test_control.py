"""Who may steer the bot in voice (issue 10, defect 3)."""

from __future__ import annotations

import pytest

from bot.speech.control import Action, Seat, control_refusal, estimate_seconds, queue_line

CHANNEL = "#General"


@pytest.mark.parametrize("action", list(Action))
def test_move_members_may_do_anything(action: Action) -> None:
    seat = Seat(listening=False, moves_members=True, others_listening=5)
    assert control_refusal(action, seat, CHANNEL) is None


def test_the_author_may_skip_their_own_message_from_anywhere() -> None:
    assert control_refusal(Action.SKIP, Seat(listening=False, author=True), CHANNEL) is None
    refusal = control_refusal(Action.SKIP, Seat(listening=False), CHANNEL)
    assert refusal is not None
    assert "listening in #General" in refusal


@pytest.mark.parametrize("action", [Action.SKIP, Action.STOP, Action.LEAVE])
def test_listeners_control_their_session(action: Action) -> None:
    assert control_refusal(action, Seat(listening=True, others_listening=3), CHANNEL) is None


def test_outsiders_cannot_stop_or_send_the_bot_away_from_listeners() -> None:
    outsider = Seat(listening=False, others_listening=2)
    assert control_refusal(Action.STOP, outsider, CHANNEL) is not None
    refusal = control_refusal(Action.LEAVE, outsider, CHANNEL)
    assert refusal == "2 members are listening in #General; join them to send me away."


def test_the_bot_is_not_pulled_away_from_listeners() -> None:
    refusal = control_refusal(Action.MOVE, Seat(listening=False, others_listening=1), CHANNEL)
    assert refusal is not None
    assert "1 member in #General" in refusal
    assert "Move Members" in refusal
    # An empty channel (only bots left) may be left or moved from by anyone.
    assert control_refusal(Action.MOVE, Seat(listening=False), CHANNEL) is None
    assert control_refusal(Action.LEAVE, Seat(listening=False), CHANNEL) is None


def test_queue_lines_show_who_and_how_long_never_text() -> None:
    text = "secret plans from a private channel " * 3
    line = queue_line("alice", estimate_seconds(text))
    assert line == "alice · about 8 s"
    assert "secret" not in line
    assert queue_line("bob", 600) == "bob · about 10 min"
    assert queue_line("carol", None) == "carol"
