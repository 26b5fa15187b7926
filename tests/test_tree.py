from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import discord
import pytest
from discord import app_commands

from bot.errors import (
    AuthenticationError,
    CooldownError,
    InvalidRequestError,
    QueueFullError,
    QuotaExceededError,
    SchedulerClosedError,
)
from bot.tree import TTSCommandTree, describe_error, send_error
from tests.helpers import mock_interaction

NOW = datetime(2025, 11, 25, 12, 0, tzinfo=UTC)


async def _noop(interaction: discord.Interaction) -> None:
    """A real command to wrap errors with, as the tree would."""


COMMAND: app_commands.Command[Any, ..., None] = app_commands.Command(
    name="speak", description="test", callback=_noop
)


def _invoke_error(original: Exception) -> app_commands.CommandInvokeError:
    return app_commands.CommandInvokeError(COMMAND, original)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (InvalidRequestError("There is no text"), "There is no text"),
        (QueueFullError(per_user=True, limit=3), "You already have 3 requests waiting"),
        (QueueFullError(per_user=False, limit=9), "The speech queue is full"),
        (SchedulerClosedError(), "The bot is restarting"),
        (AuthenticationError(status=401), "misconfigured"),
        (app_commands.NoPrivateMessage(), "only in a server"),
        (app_commands.MissingPermissions(["manage_guild"]), "Manage Guild permission"),
    ],
)
def test_known_errors_get_their_friendly_line(error: Exception, expected: str) -> None:
    for wrapped in (error, _invoke_error(error)):
        message, ref = describe_error(wrapped, now=NOW)
        assert expected in message
        assert ref is None


def test_cooldown_shows_a_discord_relative_timestamp() -> None:
    message, _ = describe_error(CooldownError(30), now=NOW)
    assert message == f"You're on cooldown; try again <t:{int(NOW.timestamp()) + 30}:R>."


def test_quota_shows_when_it_resets_as_a_discord_timestamp() -> None:
    reset = int(NOW.timestamp()) + 3600
    message, ref = describe_error(QuotaExceededError(limit=5, needed=2, reset_at=reset))
    assert message == (
        "You've used your 5 requests for today in this server (this one needs 2). "
        f"The count resets <t:{reset}:R>."
    )
    assert ref is None


def test_unexpected_errors_get_a_reference() -> None:
    message, ref = describe_error(_invoke_error(KeyError("boom")))
    assert ref is not None
    assert re.fullmatch(r"[0-9a-f]{6}", ref)
    assert f"(ref `{ref}`)" in message
    assert "boom" not in message  # Internals stay in the log.


async def test_on_error_logs_the_same_reference_with_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = discord.Client(intents=discord.Intents(guilds=True))
    tree = TTSCommandTree(client)
    interaction = mock_interaction()
    try:
        raise ZeroDivisionError("deep inside")
    except ZeroDivisionError as exc:
        error = _invoke_error(exc)
    with caplog.at_level(logging.ERROR, logger="bot.tree"):
        await tree.on_error(interaction, error)
    sent = interaction.response.send_message.await_args
    ref = re.search(r"ref `([0-9a-f]{6})`", sent.args[0]).group(1)  # type: ignore[union-attr]
    assert sent.kwargs["ephemeral"] is True
    (record,) = caplog.records
    assert f"ref={ref}" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is ZeroDivisionError


async def test_on_error_hands_an_unexpected_error_to_the_bots_operator_alert() -> None:
    from unittest.mock import create_autospec

    from bot.app import TTSBot

    client = discord.Client(intents=discord.Intents(guilds=True))
    report = create_autospec(TTSBot, instance=True).report_unexpected
    client.report_unexpected = report  # type: ignore[attr-defined]
    tree = TTSCommandTree(client)
    interaction = mock_interaction()
    interaction.command = COMMAND
    boom = ZeroDivisionError("deep inside")
    await tree.on_error(interaction, _invoke_error(boom))
    ref = re.search(  # type: ignore[union-attr]
        r"ref `([0-9a-f]{6})`", interaction.response.send_message.await_args.args[0]
    ).group(1)
    report.assert_called_once_with("/speak", ref, boom)
    # An expected refusal is the member's business, not the operator's.
    report.reset_mock()
    await tree.on_error(interaction, _invoke_error(QueueFullError(per_user=True, limit=3)))
    report.assert_not_called()


async def test_send_error_edits_the_placeholder_once_deferred() -> None:
    interaction = mock_interaction(done=True)
    await send_error(interaction, "nope")
    interaction.response.send_message.assert_not_awaited()
    kwargs = interaction.edit_original_response.await_args.kwargs
    assert kwargs["content"] == "⚠️ nope"
    assert kwargs["attachments"] == []
