"""/speak as a native voice message, through spec'd mocks: the upload Discord documents, in
reply to the public answer that names the member; the member's own permission, checked for
free; and the fallback to a normal file on that public answer, saying why."""

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
from bot.errors import BotError, InvalidRequestError
from bot.speech.access import Caller
from bot.synthesis.service import Admission, Destination
from cogs._voice_message import IS_VOICE_MESSAGE
from cogs.speak import Speak
from tests.cogs.test_speak import AUDIO, CLIP, finished_stream
from tests.helpers import mock_bot, mock_interaction

VOICE = VoiceMessage(data=b"OggS-voice", duration=1.25, waveform="AAEC")
CHANNEL_ID = 555
#: The public answer's message id, which Discord returns for the deferral.
ANSWER_ID = 9001


def allowed(**flags: bool) -> discord.Permissions:
    base = {"send_messages": True, "attach_files": True, "send_voice_messages": True}
    return discord.Permissions(**{**base, **flags})


@pytest.fixture
def bot(make_settings: Callable[..., Settings]) -> Any:
    bot = mock_bot(make_settings())
    bot.services.speech.start.return_value = finished_stream()
    bot.services.scheduler.refusal.return_value = None
    bot.services.speech.admit.return_value = create_autospec(Admission, instance=True)
    bot.services.speech.render_many.return_value = CLIP
    bot.services.speech.voice_message.return_value = VOICE
    bot.services.speech.prefers_voice_message.return_value = False
    bot.http = create_autospec(discord.http.HTTPClient, instance=True)
    bot.http.request.return_value = {"id": "1"}
    return bot


def interaction_in_channel(
    permissions: discord.Permissions | None = None,
    *,
    member: discord.Permissions | None = None,
) -> Any:
    """Member 7's /speak in a text channel: `permissions` are the bot's there, `member` the
    member's own (as Discord resolves them into the interaction)."""
    interaction = mock_interaction(user_id=7)
    interaction.user.mention = "<@7>"
    interaction.permissions = member or allowed()
    channel = create_autospec(discord.TextChannel, instance=True)
    channel.id = CHANNEL_ID
    channel.permissions_for.return_value = permissions or allowed(read_message_history=True)
    interaction.channel = channel
    interaction.channel_id = CHANNEL_ID
    interaction.guild = create_autospec(discord.Guild, instance=True)
    interaction.followup = create_autospec(discord.Webhook, instance=True)
    deferral = create_autospec(discord.InteractionCallbackResponse, instance=True)
    deferral.message_id = ANSWER_ID
    interaction.response.defer.return_value = deferral
    return interaction


def expired() -> discord.HTTPException:
    response = create_autospec(aiohttp.ClientResponse, instance=True)
    response.status, response.reason = 401, "Unauthorized"
    return discord.HTTPException(response, {"code": 50027, "message": "Invalid Webhook Token"})


async def run(cog: Speak, interaction: Any, voice_message: bool | None) -> None:
    callback: Any = Speak.speak.callback
    await callback(cog, interaction, "Hello there", None, None, None, None, None, False,
                   voice_message)  # fmt: skip


async def test_voice_message_is_posted_as_discord_documents_it(bot: Any) -> None:
    interaction = interaction_in_channel()
    await run(Speak(bot), interaction, True)
    assert bot.services.speech.admit.await_args.kwargs["destination"] is Destination.CHAT
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


async def test_the_voice_message_replies_to_the_public_answer_that_names_the_member(
    bot: Any,
) -> None:
    interaction = interaction_in_channel()
    await run(Speak(bot), interaction, True)
    # Public, like any /speak answer: a private one could not be replied to.
    interaction.response.defer.assert_awaited_once_with(thinking=True)
    (_,), kwargs = bot.http.request.await_args
    payload = json.loads(kwargs["form"][0]["value"])
    assert payload["message_reference"] == {
        "message_id": str(ANSWER_ID),
        "channel_id": str(CHANNEL_ID),
        "fail_if_not_exists": False,  # A deleted answer does not stop the voice message.
    }
    assert payload["allowed_mentions"] == {"parse": [], "replied_user": False}
    final = interaction.edit_original_response.await_args_list[-1].kwargs
    assert final["content"] == "🎤 Voice message for <@7> · **Kore** · 1.2 s"
    assert final["allowed_mentions"].to_dict() == {"parse": []}  # Named, not pinged.
    assert "attachments" not in final  # The voice message is the speech.


async def test_without_read_message_history_the_voice_message_is_no_reply(bot: Any) -> None:
    interaction = interaction_in_channel(allowed(read_message_history=False))
    await run(Speak(bot), interaction, True)
    (_,), kwargs = bot.http.request.await_args
    assert "message_reference" not in json.loads(kwargs["form"][0]["value"])
    final = interaction.edit_original_response.await_args_list[-1].kwargs
    assert "<@7>" in final["content"]  # The public answer still names the member.


async def test_the_members_default_asks_for_a_voice_message(bot: Any) -> None:
    bot.services.speech.prefers_voice_message.return_value = True
    interaction = interaction_in_channel()
    await run(Speak(bot), interaction, None)
    bot.services.speech.prefers_voice_message.assert_awaited_once_with(Caller(7, guild_id=42))
    bot.http.request.assert_awaited_once()
    await run(Speak(bot), interaction_in_channel(), False)  # Asking for a file wins.
    bot.http.request.assert_awaited_once()


@pytest.mark.parametrize(
    ("asked", "told"),
    [
        (True, "Leave out voice_message to get the speech as a file."),
        (None, "Your /voice set choice is a voice message: use voice_message: False here"),
    ],
)
async def test_a_member_who_may_not_send_voice_messages_is_refused_for_free(
    bot: Any, asked: bool | None, told: str
) -> None:
    bot.services.speech.prefers_voice_message.return_value = True
    interaction = interaction_in_channel(member=allowed(send_voice_messages=False))
    with pytest.raises(BotError) as refused:
        await run(Speak(bot), interaction, asked)
    assert refused.value.user_message.startswith("You may not send voice messages in this channel.")
    assert told in refused.value.user_message
    bot.services.speech.admit.assert_not_awaited()  # Nothing queued, nothing spent.
    interaction.response.defer.assert_not_awaited()  # The tree answers privately.
    bot.http.request.assert_not_awaited()
    # A file is still theirs to ask for.
    await run(Speak(bot), interaction, False)
    bot.services.speech.start.assert_awaited_once()


async def test_without_the_bots_permission_the_public_answer_carries_the_file(
    bot: Any,
) -> None:
    interaction = interaction_in_channel(allowed(send_voice_messages=False))
    await run(Speak(bot), interaction, True)
    bot.http.request.assert_not_awaited()
    # No follow-up: after a deferral Discord makes the first one the answer itself, with the
    # deferral's visibility, so a follow-up file could end up private.
    interaction.followup.send.assert_not_awaited()
    interaction.response.defer.assert_awaited_once_with(thinking=True)
    final = interaction.edit_original_response.await_args_list[-1].kwargs
    (file,) = final["attachments"]
    assert file.filename == CLIP.filename
    assert final["content"].startswith("🔊 **Kore** · 1.0 s\n📎 ")
    assert "Send Voice Messages" in final["content"]


async def test_when_discord_refuses_the_file_is_posted_instead(bot: Any) -> None:
    response = create_autospec(aiohttp.ClientResponse, instance=True)
    response.status, response.reason = 400, "Bad Request"
    bot.http.request.side_effect = discord.HTTPException(response, {"code": 50161})
    interaction = interaction_in_channel()
    await run(Speak(bot), interaction, True)
    interaction.followup.send.assert_not_awaited()
    final = interaction.edit_original_response.await_args_list[-1].kwargs
    assert final["attachments"][0].filename == CLIP.filename
    assert "Discord refused" in final["content"]


async def test_a_voice_message_posted_after_the_token_expired_ends_quietly(bot: Any) -> None:
    interaction = interaction_in_channel()
    interaction.edit_original_response.side_effect = expired()
    await run(Speak(bot), interaction, True)  # No error for the tree to log.
    bot.http.request.assert_awaited_once()
    interaction.channel.send.assert_not_awaited()  # The voice message says it all.


async def test_a_voice_message_cannot_also_be_played(bot: Any) -> None:
    interaction = interaction_in_channel()
    callback: Any = Speak.speak.callback
    with pytest.raises(InvalidRequestError, match="voice message"):
        await callback(Speak(bot), interaction, "hi", None, None, None, None, True, False, True)
    bot.services.speech.admit.assert_not_awaited()
