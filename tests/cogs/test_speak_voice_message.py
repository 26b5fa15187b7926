"""/speak as a native voice message, through spec'd mocks: the upload Discord documents, the
short private answer, and the fallback to a normal file that says why."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from unittest.mock import create_autospec

import aiohttp
import discord
import pytest

from bot.audio.voice_message import VoiceMessage
from bot.config import Settings
from bot.errors import InvalidRequestError
from bot.speech.access import Caller
from bot.synthesis.service import Destination
from cogs._voice_message import IS_VOICE_MESSAGE
from cogs.speak import Speak
from tests.cogs.test_speak import AUDIO, CLIP, finished_stream
from tests.helpers import mock_bot, mock_interaction

VOICE = VoiceMessage(data=b"OggS-voice", duration=1.25, waveform="AAEC")
CHANNEL_ID = 555


def allowed(**flags: bool) -> discord.Permissions:
    base = {"send_messages": True, "attach_files": True, "send_voice_messages": True}
    return discord.Permissions(**{**base, **flags})


@pytest.fixture
def bot(make_settings: Callable[..., Settings]) -> Any:
    bot = mock_bot(make_settings())
    bot.services.speech.begin.return_value = finished_stream()
    bot.services.speech.render_many.return_value = CLIP
    bot.services.speech.voice_message.return_value = VOICE
    bot.services.speech.prefers_voice_message.return_value = False
    bot.http = create_autospec(discord.http.HTTPClient, instance=True)
    bot.http.request.return_value = {"id": "1"}
    return bot


def interaction_in_channel(permissions: discord.Permissions | None = None) -> Any:
    interaction = mock_interaction(user_id=7)
    channel = create_autospec(discord.TextChannel, instance=True)
    channel.id = CHANNEL_ID
    channel.permissions_for.return_value = permissions or allowed()
    interaction.channel = channel
    interaction.channel_id = CHANNEL_ID
    interaction.guild = create_autospec(discord.Guild, instance=True)
    interaction.followup = create_autospec(discord.Webhook, instance=True)
    return interaction


async def run(cog: Speak, interaction: Any, voice_message: bool | None) -> None:
    callback: Any = Speak.speak.callback
    await callback(cog, interaction, "Hello there", None, None, None, None, None, False,
                   voice_message)  # fmt: skip


async def test_voice_message_is_posted_as_discord_documents_it(bot: Any) -> None:
    interaction = interaction_in_channel()
    await run(Speak(bot), interaction, True)
    assert bot.services.speech.begin.await_args.kwargs["destination"] is Destination.CHAT
    interaction.response.defer.assert_awaited_once_with(thinking=True, ephemeral=True)
    bot.services.speech.voice_message.assert_awaited_once_with([AUDIO])
    bot.services.speech.render_many.assert_not_awaited()
    (route,), kwargs = bot.http.request.await_args
    assert (route.method, route.path) == ("POST", "/channels/{channel_id}/messages")
    assert route.channel_id == CHANNEL_ID
    form = {part["name"]: part for part in kwargs["form"]}
    payload = json.loads(form["payload_json"]["value"])
    assert payload["flags"] == IS_VOICE_MESSAGE == 8192
    assert "content" not in payload
    (attachment,) = payload["attachments"]
    assert attachment["duration_secs"] == 1.25
    assert attachment["waveform"] == "AAEC"
    assert form["files[0]"]["content_type"] == "audio/ogg"
    (file,) = kwargs["files"]
    assert file.fp.read() == b"OggS-voice"
    final = interaction.edit_original_response.await_args_list[-1].kwargs
    assert "voice message" in final["content"]
    assert "attachments" not in final  # The private line carries no file.


async def test_the_members_default_asks_for_a_voice_message(bot: Any) -> None:
    bot.services.speech.prefers_voice_message.return_value = True
    interaction = interaction_in_channel()
    await run(Speak(bot), interaction, None)
    bot.services.speech.prefers_voice_message.assert_awaited_once_with(Caller(7, guild_id=42))
    bot.http.request.assert_awaited_once()
    await run(Speak(bot), interaction_in_channel(), False)  # Asking for a file wins.
    bot.http.request.assert_awaited_once()


async def test_without_the_permission_the_file_is_posted_and_the_member_told_why(
    bot: Any,
) -> None:
    interaction = interaction_in_channel(allowed(send_voice_messages=False))
    await run(Speak(bot), interaction, True)
    bot.http.request.assert_not_awaited()
    followup = interaction.followup.send.await_args.kwargs
    assert followup["file"].filename == CLIP.filename
    assert followup.get("ephemeral", False) is False
    final = interaction.edit_original_response.await_args_list[-1].kwargs["content"]
    assert "Send Voice Messages" in final


async def test_when_discord_refuses_the_file_is_posted_instead(bot: Any) -> None:
    response = create_autospec(aiohttp.ClientResponse, instance=True)
    response.status, response.reason = 400, "Bad Request"
    bot.http.request.side_effect = discord.HTTPException(response, {"code": 50161})
    interaction = interaction_in_channel()
    await run(Speak(bot), interaction, True)
    assert interaction.followup.send.await_args.kwargs["file"].filename == CLIP.filename
    final = interaction.edit_original_response.await_args_list[-1].kwargs["content"]
    assert "Discord refused" in final


async def test_a_voice_message_cannot_also_be_played(bot: Any) -> None:
    interaction = interaction_in_channel()
    callback: Any = Speak.speak.callback
    with pytest.raises(InvalidRequestError, match="voice message"):
        await callback(Speak(bot), interaction, "hi", None, None, None, None, True, False, True)
    bot.services.speech.begin.assert_not_awaited()
