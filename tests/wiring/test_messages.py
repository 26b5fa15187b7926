"""Messages reaching the real bot: a mention is not a command (issue 10, defect 9)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests import discord_fakes as df
from tests.wiring.harness import ALICE, Wired


async def test_a_message_mentioning_the_bot_is_not_taken_for_a_command(
    wired: Wired, caplog: pytest.LogCaptureFixture
) -> None:
    assert wired.bot.user is not None
    payload = df.message_payload(f"<@{wired.bot.user.id}> hello there", author_id=ALICE)
    with caplog.at_level(logging.DEBUG):
        wired.bot._connection.parse_message_create(payload)  # type: ignore[arg-type]
        for _ in range(5):  # Let every listener the dispatch started run.
            await asyncio.sleep(0.01)
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert problems == []
    assert "CommandNotFound" not in caplog.text
