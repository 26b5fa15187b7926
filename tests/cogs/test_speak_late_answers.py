"""/speak answered after the interaction's 15 minutes, through spec'd mocks: a request that
waited in a long queue still plays, and its answer, which Discord no longer lets the bot edit,
is no error; only what the member still needs to know is said in the channel."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from unittest.mock import create_autospec

import aiohttp
import discord
import pytest

from bot.config import Settings
from bot.playback.player import GuildPlayer
from bot.synthesis.service import Admission
from cogs._answers import token_expired
from cogs.speak import Speak
from tests.cogs.test_speak import AUDIO, CLIP, finished_stream, run_speak
from tests.helpers import mock_bot, mock_interaction


def http_error(status: int, code: int, message: str) -> discord.HTTPException:
    response = create_autospec(aiohttp.ClientResponse, instance=True)
    response.status, response.reason = status, message
    return discord.HTTPException(response, {"code": code, "message": message})


#: What Discord answers an edit with an expired interaction token.
EXPIRED = [
    pytest.param(401, 50027, "Invalid Webhook Token", id="401-invalid-webhook-token"),
    pytest.param(404, 10015, "Unknown Webhook", id="404-unknown-webhook"),
]


async def _one(item: Any) -> Any:
    yield item


@pytest.fixture
def bot(make_settings: Callable[..., Settings]) -> Any:
    bot = mock_bot(make_settings())
    stream = finished_stream()
    stream.audio.return_value = _one(AUDIO)
    bot.services.speech.start.return_value = stream
    bot.services.scheduler.refusal.return_value = None
    bot.services.speech.admit.return_value = create_autospec(Admission, instance=True)
    bot.services.speech.render.return_value = CLIP
    bot.services.speech.prefers_voice_message.return_value = False
    return bot


def asking_to_play(bot: Any, *, already_there: bool = True) -> tuple[Any, Any]:
    """Member 7's /speak play:true from a text channel, with them in a voice channel; the
    bot is there already, or joins (a Stage where it may not speak yet says so)."""
    channel = create_autospec(discord.StageChannel, instance=True)
    channel.mention, channel.members, channel.user_limit = "<#55>", [], 0
    interaction = mock_interaction(user_id=7)
    interaction.user.mention = "<@7>"
    interaction.user.display_name = "Alice"
    interaction.user.voice.channel = channel
    interaction.channel = create_autospec(discord.TextChannel, instance=True)
    player = create_autospec(GuildPlayer, instance=True)
    player.enqueue.return_value = 3
    if already_there:
        bot.playback.connected_channel.return_value = channel
        bot.playback.player.return_value = player
    else:
        bot.playback.connected_channel.return_value = None
        bot.playback.player.return_value = None
        bot.playback.join.return_value = player
        bot.playback.take_the_stage.return_value = "A stage moderator must invite me to speak."
    return interaction, player


@pytest.mark.parametrize(("status", "code", "message"), EXPIRED)
async def test_playing_after_the_token_expired_is_no_error(
    bot: Any, caplog: pytest.LogCaptureFixture, status: int, code: int, message: str
) -> None:
    interaction, player = asking_to_play(bot)
    interaction.edit_original_response.side_effect = http_error(status, code, message)
    with caplog.at_level(logging.INFO):
        await run_speak(Speak(bot), interaction, "hi", None, None, None, None, True)
    player.enqueue.assert_called_once()  # It plays all the same.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "token expired" in caplog.text
    interaction.channel.send.assert_not_awaited()  # Nothing the member needs to know.


async def test_a_warning_the_expired_answer_cannot_show_is_said_in_the_channel(
    bot: Any,
) -> None:
    interaction, _ = asking_to_play(bot, already_there=False)
    interaction.edit_original_response.side_effect = http_error(401, 50027, "Invalid Webhook Token")
    await run_speak(Speak(bot), interaction, "hi", None, None, None, None, True)
    sent = interaction.channel.send.await_args
    assert sent.args == ("<@7> ⚠️ A stage moderator must invite me to speak.",)
    mentions = sent.kwargs["allowed_mentions"].to_dict()
    assert (mentions["parse"], mentions["users"]) == ([], [7])  # Only the member is pinged.


async def test_any_other_failure_to_answer_is_still_an_error(bot: Any) -> None:
    interaction, _ = asking_to_play(bot)
    failure = http_error(500, 0, "Internal Server Error")
    interaction.edit_original_response.side_effect = failure
    with pytest.raises(discord.HTTPException) as raised:
        await run_speak(Speak(bot), interaction, "hi", None, None, None, None, True)
    assert raised.value is failure


@pytest.mark.parametrize(("status", "code", "message"), EXPIRED)
def test_an_expired_token_is_told_apart_from_other_refusals(
    status: int, code: int, message: str
) -> None:
    assert token_expired(http_error(status, code, message))
    assert not token_expired(http_error(404, 10008, "Unknown Message"))
    assert not token_expired(http_error(403, 50013, "Missing Permissions"))
