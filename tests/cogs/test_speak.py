"""The /speak cog through spec'd mocks: what it asks of the core, what it tells Discord."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest.mock import ANY, call, create_autospec

import aiohttp
import discord
import pytest

from bot import audio
from bot.config import Settings
from bot.errors import BotError, CooldownError, InvalidRequestError, OutOfCreditsError
from bot.speech.access import Caller
from bot.speech.request import build_request
from bot.storage import GuildSettings, Storage
from bot.synthesis.cluster.members import ClusterTurn, RedisTurns
from bot.synthesis.scheduler import Ticket
from bot.synthesis.service import Admission, Clip, Destination, SpeakOptions
from bot.synthesis.stream import SpeechStream
from cogs._shared import style_autocomplete, voice_autocomplete
from cogs.speak import Speak, progress_line, result_line
from tests.helpers import make_member, make_message, mock_bot, mock_interaction
from tests.signals import tone

REQUEST = build_request("Hello there", voice="Kore")
AUDIO = audio.probe(audio.encode_wav(tone(1.0)), audio.AudioFormat.WAV)
CLIP = Clip(data=b"OggS-fake", duration=1.0, filename="kore-hello-there.ogg")


def finished_stream(audios: list[Any] | None = None, error: BaseException | None = None) -> Any:
    """A SpeechStream (spec'd) whose chunks are all made, or whose making failed."""
    stream = create_autospec(SpeechStream, instance=True)
    stream.requests = [REQUEST]
    stream.index, stream.total, stream.closed = 1, 1, False
    if error is not None:
        stream.collect.side_effect = error
    else:
        stream.collect.return_value = audios or [AUDIO]
    return stream


async def run_speak(cog: Speak, interaction: Any, *args: Any) -> None:
    """Call /speak's body as the tree would, with positional options in declared order."""
    callback: Any = Speak.speak.callback
    await callback(cog, interaction, *args)


@pytest.fixture
def bot(make_settings: Callable[..., Settings]) -> Any:
    bot = mock_bot(make_settings())
    bot.services.speech.start.return_value = finished_stream()
    bot.services.scheduler.refusal.return_value = None
    bot.services.speech.admit.return_value = create_autospec(Admission, instance=True)
    bot.services.speech.render_many.return_value = CLIP
    bot.services.speech.prefers_voice_message.return_value = False
    return bot


async def test_speak_validates_queues_defers_and_posts_the_clip(bot: Any) -> None:
    interaction = mock_interaction(user_id=7)
    await run_speak(Speak(bot), interaction, "Hello there", "kore", None, 0.7, "calm", False)

    # One call into the pipeline: who asks, what they wrote and chose, and where it goes.
    bot.services.speech.admit.assert_awaited_once_with(
        Caller(user_id=7, guild_id=42),
        "Hello there",
        SpeakOptions(voice="kore", temperature=0.7, style="calm"),
        destination=Destination.CHAT,
        guild=None,
        within=ANY,
    )
    # A chat reply must be made within the token's 15 minutes, less time to upload it.
    within = bot.services.speech.admit.await_args.kwargs["within"]
    assert 15 * 60 - 70 < within <= 15 * 60 - 60
    interaction.response.defer.assert_awaited_once_with(thinking=True)
    bot.services.speech.render_many.assert_awaited_once_with([AUDIO], REQUEST)
    final = interaction.edit_original_response.await_args_list[-1]
    assert final.kwargs["content"] == "🔊 **Kore** · 1.0 s"
    (file,) = final.kwargs["attachments"]
    assert isinstance(file, discord.File)
    assert file.filename == "kore-hello-there.ogg"
    assert file.fp.read() == b"OggS-fake"
    assert final.kwargs["allowed_mentions"].to_dict() == {"parse": []}


async def test_long_text_chunks_are_joined_into_one_file(bot: Any) -> None:
    bot.services.speech.start.return_value = finished_stream([AUDIO, AUDIO])
    interaction = mock_interaction()
    await run_speak(Speak(bot), interaction, "long text", None, None, None, None, None)
    bot.services.speech.render_many.assert_awaited_once_with([AUDIO, AUDIO], REQUEST)
    assert len(interaction.edit_original_response.await_args_list[-1].kwargs["attachments"]) == 1


async def test_refusals_happen_before_deferring_and_propagate_to_the_tree(bot: Any) -> None:
    # A cooldown the scheduler foresees: found out (by starting) before the deferral.
    bot.services.scheduler.refusal.return_value = CooldownError(12.0)
    bot.services.speech.start.side_effect = CooldownError(12.0)
    interaction = mock_interaction()
    with pytest.raises(CooldownError):
        await run_speak(Speak(bot), interaction, "hi", None, None, None, None)
    interaction.response.defer.assert_not_awaited()

    bot.services.speech.admit.side_effect = InvalidRequestError("no")
    with pytest.raises(InvalidRequestError):
        await run_speak(Speak(bot), interaction, "hi", None, None, None, None)
    interaction.response.defer.assert_not_awaited()


async def test_a_failed_request_replaces_the_placeholder_with_its_reason(bot: Any) -> None:
    stream = finished_stream(error=OutOfCreditsError(status=406))
    bot.services.speech.start.return_value = stream
    interaction = mock_interaction(done=True)
    await run_speak(Speak(bot), interaction, "hi", None, None, None, None)
    interaction.response.defer.assert_awaited_once()
    final = interaction.edit_original_response.await_args_list[-1]
    assert "out of credits" in final.kwargs["content"]
    assert final.kwargs["attachments"] == []
    bot.services.speech.render_many.assert_not_awaited()
    stream.cancel.assert_called_once_with()


async def test_if_deferring_fails_the_message_is_withdrawn(bot: Any) -> None:
    stream = finished_stream()
    bot.services.speech.start.return_value = stream
    interaction = mock_interaction()
    response = create_autospec(aiohttp.ClientResponse, instance=True)
    response.status, response.reason = 404, "Not Found"
    interaction.response.defer.side_effect = discord.NotFound(response, "Unknown interaction")
    with pytest.raises(discord.NotFound):
        await run_speak(Speak(bot), interaction, "hi", None, None, None, None)
    # Deferred before starting: nothing was started, its quota is given back.
    bot.services.speech.admit.return_value.release.assert_called_once_with()
    bot.services.speech.start.assert_not_awaited()
    # Started first (a refusal foreseen that the cache answered after all): it is cancelled.
    bot.services.scheduler.refusal.return_value = CooldownError(1.0)
    with pytest.raises(discord.NotFound):
        await run_speak(Speak(bot), interaction, "hi", None, None, None, None)
    stream.cancel.assert_called_once_with()
    stream.collect.assert_not_awaited()


async def test_speak_defers_before_looking_for_the_first_chunk(bot: Any) -> None:
    """The first chunk's cache lookup and calls in flight may wait on Redis (up to its
    budget): the interaction must already be deferred then, Discord waits only 3 s."""
    interaction = mock_interaction()
    order: list[str] = []
    interaction.response.defer.side_effect = lambda **_: order.append("defer")

    def start(_: object) -> Any:
        order.append("start")
        return finished_stream()

    bot.services.speech.start.side_effect = start
    await run_speak(Speak(bot), interaction, "hi", None, None, None, None)
    assert order == ["defer", "start"]
    bot.services.speech.start.assert_awaited_once_with(bot.services.speech.admit.return_value)


async def test_asking_to_play_without_being_in_voice_is_refused_for_free(bot: Any) -> None:
    interaction = mock_interaction()
    interaction.user.voice = None
    with pytest.raises(Exception, match="Join a voice channel first"):
        await run_speak(Speak(bot), interaction, "hi", None, None, None, None, True)
    bot.services.speech.admit.assert_not_called()


def a_message(content: str) -> Any:
    return make_message(content, mentions=[make_member(5, display_name="Alice")])


@pytest.fixture
def guild_rules(bot: Any) -> GuildSettings:
    bot.services.storage = create_autospec(Storage, instance=True)
    rules = GuildSettings.defaults(42)
    bot.services.storage.get_guild.return_value = rules
    bot.services.speech.text_limit.return_value = 2000
    return rules


async def test_speak_this_message_gets_the_same_clean_up_as_narration(
    bot: Any, guild_rules: GuildSettings
) -> None:
    message = a_message(
        "<@5> look <:partyblob:123456789012345678> ||the ending|| ```print('secret')``` now"
    )
    interaction = mock_interaction()
    await Speak(bot).speak_message(interaction, message)
    _, text, options = bot.services.speech.admit.call_args.args
    assert options == SpeakOptions()
    assert "Alice" in text
    assert "partyblob" in text
    for unspoken in ("123456789012345678", "ending", "secret", "||", "```", "<"):
        assert unspoken not in text
    assert bot.services.speech.admit.call_args.kwargs["guild"] is guild_rules
    final = interaction.edit_original_response.await_args_list[-1]
    assert final.kwargs["content"].startswith("🔊 https://discord.com/channels/1/2/3 · **Kore**")


async def test_a_long_message_is_read_from_its_start_within_the_servers_limit(
    bot: Any, guild_rules: GuildSettings
) -> None:
    bot.services.speech.text_limit.return_value = 100
    await Speak(bot).speak_message(mock_interaction(), a_message("word " * 200))
    _, text, _ = bot.services.speech.admit.call_args.args
    assert len(text) <= 100
    assert text.endswith("and more")


async def test_a_message_with_nothing_speakable_is_refused_without_queueing(
    bot: Any, guild_rules: GuildSettings
) -> None:
    with pytest.raises(BotError, match="nothing to speak"):
        await Speak(bot).speak_message(mock_interaction(), a_message("   "))
    bot.services.speech.admit.assert_not_called()


async def test_context_menu_is_registered_and_removed_with_the_cog(bot: Any) -> None:
    cog = Speak(bot)
    await cog.cog_load()
    bot.tree.add_command.assert_called_once_with(cog.speak_message_menu)
    await cog.cog_unload()
    assert bot.tree.remove_command.call_args == call(
        "Speak this message", type=discord.AppCommandType.message
    )


async def test_autocomplete_shows_voices_with_their_character() -> None:
    choices = await voice_autocomplete(mock_interaction(), "sul")
    assert [(c.name, c.value) for c in choices] == [("Sulafat — Warm", "Sulafat")]
    assert len(await voice_autocomplete(mock_interaction(), "")) == 25  # Discord's cap.


async def test_style_autocomplete_offers_free_text_first() -> None:
    choices = await style_autocomplete(mock_interaction(), "like a robot")
    assert choices[0].value == "like a robot"
    presets = await style_autocomplete(mock_interaction(), "whis")
    assert [c.value for c in presets] == ["whis", "whispering"]


def test_progress_and_result_lines() -> None:
    ticket = create_autospec(Ticket, instance=True)
    ticket.state, ticket.position, ticket.eta = "queued", 3, 45.0
    assert progress_line(ticket, now=1000.0) == "⏳ Queued: #3 in line, ready <t:1045:R>."
    ticket.state, ticket.position, ticket.eta = "running", None, 18.0
    assert progress_line(ticket, now=1000.0) == "🎙️ Making speech, ready <t:1018:R>…"
    assert progress_line(ticket, part=(2, 3), now=1000.0) == (
        "🎙️ Making speech (part 2 of 3), ready <t:1018:R>…"
    )
    two = build_request("a: b / c: d", voice="Puck", voice_2="Kore")
    assert result_line(two, 2.345) == "🔊 **Puck** & **Kore** · 2.3 s"
    assert result_line(two, None) == "🔊 **Puck** & **Kore**"


async def test_in_voice_the_message_is_queued_after_its_first_chunk(bot: Any) -> None:
    from bot.playback.player import GuildPlayer, Utterance

    channel = create_autospec(discord.VoiceChannel, instance=True)
    channel.mention = "<#55>"
    channel.members, channel.user_limit = [], 0
    interaction = mock_interaction(user_id=7)
    interaction.user.voice.channel = channel
    interaction.user.display_name = "Alice"
    bot.playback.connected_channel.return_value = channel
    player = create_autospec(GuildPlayer, instance=True)
    player.enqueue.return_value = 1
    bot.playback.player.return_value = player
    made: list[int] = []

    async def chunks() -> Any:
        for n in range(3):
            made.append(n)
            yield AUDIO

    stream = finished_stream()
    stream.requests, stream.total = [REQUEST] * 3, 3
    stream.audio.return_value = chunks()
    bot.services.speech.start.return_value = stream
    bot.services.speech.render.return_value = CLIP

    async def ogg_clips(audios: Any, request: Any) -> Any:
        async for _ in audios:
            yield CLIP.data

    bot.services.speech.ogg_clips.side_effect = ogg_clips

    await run_speak(Speak(bot), interaction, "long", None, None, None, None, None)

    assert bot.services.speech.admit.call_args.kwargs == {
        "destination": Destination.VOICE,
        "guild": None,
        "within": None,  # Voice has no reply to make in time; the player has its own queue.
    }
    assert made == [0]  # Only the first chunk was waited for before queueing.
    (utterance,) = player.enqueue.call_args.args
    assert isinstance(utterance, Utterance)
    assert utterance.label == "Alice"  # Who, never what: /queue shows no text.
    assert [clip async for clip in utterance.clips] == [CLIP.data] * 3
    assert made == [0, 1, 2]
    utterance.on_close()  # type: ignore[misc]
    stream.cancel.assert_called_once_with()
    content = interaction.edit_original_response.await_args_list[-1].kwargs["content"]
    assert content == "🔊 Playing in <#55> · **Kore** · 3 parts"
    bot.playback.join.assert_not_awaited()  # Already there.


async def test_a_file_ready_after_the_token_expired_is_posted_in_the_channel(bot: Any) -> None:
    interaction = mock_interaction(user_id=7)
    interaction.user.mention = "<@7>"
    response = create_autospec(aiohttp.ClientResponse, instance=True)
    response.status, response.reason = 401, "Unauthorized"
    expired = discord.HTTPException(response, {"code": 50027, "message": "Invalid Webhook Token"})

    async def edit(**kwargs: Any) -> None:
        if kwargs.get("attachments"):
            raise expired

    interaction.edit_original_response.side_effect = edit
    interaction.channel = create_autospec(discord.TextChannel, instance=True)
    await run_speak(Speak(bot), interaction, "Hello there", None, None, None, None, False)
    sent = interaction.channel.send.await_args
    assert sent.kwargs["content"] == "<@7> 🔊 **Kore** · 1.0 s"
    assert sent.kwargs["file"].filename == "kore-hello-there.ogg"
    mentions = sent.kwargs["allowed_mentions"].to_dict()
    assert mentions["parse"] == []
    assert mentions["users"] == [7]  # Only the member is pinged.


async def test_in_voice_a_failure_after_queueing_is_told_to_the_member_privately(
    bot: Any,
) -> None:
    from bot.playback.player import GuildPlayer

    channel = create_autospec(discord.VoiceChannel, instance=True)
    channel.members, channel.user_limit = [], 0
    interaction = mock_interaction(user_id=7)
    interaction.followup = create_autospec(discord.Webhook, instance=True)
    interaction.user.voice.channel = channel
    bot.playback.connected_channel.return_value = channel
    player = create_autospec(GuildPlayer, instance=True)
    player.enqueue.return_value = 1
    bot.playback.player.return_value = player
    stream = finished_stream()
    stream.audio.return_value = _one(AUDIO)
    bot.services.speech.start.return_value = stream
    bot.services.speech.render.return_value = CLIP
    await run_speak(Speak(bot), interaction, "hi", None, None, None, None, True)
    (utterance,) = player.enqueue.call_args.args
    assert utterance.notify is not None
    await utterance.notify("⚠️ Part 2 of your message could not be made: busy")
    interaction.followup.send.assert_awaited_once_with(
        "⚠️ Part 2 of your message could not be made: busy", ephemeral=True, allowed_mentions=ANY
    )


async def _one(item: Any) -> Any:
    yield item


async def test_where_the_bot_cannot_speak_is_found_before_anything_is_spent(bot: Any) -> None:
    from bot.errors import AccessDeniedError, ChannelFullError, VoicePermissionError

    mine = create_autospec(discord.VoiceChannel, instance=True)
    mine.members, mine.user_limit, mine.mention = [], 0, "<#1>"
    interaction = mock_interaction(user_id=7)
    interaction.user.voice.channel = mine
    bot.playback.connected_channel.return_value = None
    mine.permissions_for.return_value = discord.Permissions(connect=True)  # No Speak.
    with pytest.raises(VoicePermissionError):
        await run_speak(Speak(bot), interaction, "hi", None, None, None, None, True)
    mine.permissions_for.return_value = discord.Permissions(connect=True, speak=True)
    mine.members, mine.user_limit = [create_autospec(discord.Member, instance=True)], 1
    with pytest.raises(ChannelFullError):
        await run_speak(Speak(bot), interaction, "hi", None, None, None, None, True)
    # The bot reads to someone elsewhere: play:true from here does not pull it away.
    theirs = create_autospec(discord.VoiceChannel, instance=True)
    listener = create_autospec(discord.Member, instance=True)
    listener.id, listener.bot = 8, False
    theirs.members, theirs.mention = [listener], "<#2>"
    theirs.permissions_for.return_value = discord.Permissions.none()
    bot.playback.connected_channel.return_value = theirs
    with pytest.raises(AccessDeniedError):
        await run_speak(Speak(bot), interaction, "hi", None, None, None, None, True)
    bot.services.speech.start.assert_not_awaited()
    interaction.response.defer.assert_not_awaited()


async def test_in_a_stages_audience_the_message_is_accepted_and_queued_unmade(bot: Any) -> None:
    """Where the bot sits (or would sit) in a Stage's audience, /speak checks every rule and
    the cooldown, then queues the message without making it: the player starts its calls
    once a moderator invites the bot, and the member is told they will hear it then."""
    from bot.playback.player import GuildPlayer, Utterance
    from bot.playback.stage import StageGate

    stage = create_autospec(discord.StageChannel, instance=True)
    stage.mention, stage.members, stage.user_limit = "<#66>", [], 0
    interaction = mock_interaction(user_id=7)
    interaction.user.voice.channel = stage
    interaction.user.display_name = "Alice"
    bot.playback.audience_on.return_value = True
    bot.playback.connected_channel.return_value = stage
    player = create_autospec(GuildPlayer, instance=True)
    player.held, player.stage = True, StageGate(300.0)
    player.enqueue.return_value = 1
    bot.playback.player.return_value = player
    speech = bot.services.speech
    stream = create_autospec(SpeechStream, instance=True)
    stream.requests, stream.total = [REQUEST], 1
    speech.later.return_value = stream

    await run_speak(Speak(bot), interaction, "hi", None, None, None, None, True)

    bot.playback.audience_on.assert_called_once_with(stage)
    speech.admit.assert_awaited_once_with(
        Caller(user_id=7, guild_id=42),
        "hi",
        SpeakOptions(),
        destination=Destination.VOICE,
        guild=None,
    )
    speech.later.assert_called_once_with(speech.admit.return_value)
    speech.start.assert_not_awaited()  # Nothing queued for Segmind, nothing made.
    stream.start.assert_not_called()
    interaction.response.defer.assert_awaited_once_with(thinking=True)
    (utterance,) = player.enqueue.call_args.args
    assert isinstance(utterance, Utterance)
    assert utterance.start == stream.start  # The player queues its calls once invited.
    assert utterance.label == "Alice"
    content = interaction.edit_original_response.await_args_list[-1].kwargs["content"]
    assert content.startswith("⏳ Waiting to speak in <#66> · **Kore**")
    assert "I'm in the audience on <#66>" in content
    assert "You'll hear your message from its start once I'm invited" in content
    assert "I wait up to 5 minutes" in content


async def test_in_a_stages_audience_a_cooldown_is_refused_before_deferring(bot: Any) -> None:
    stage = create_autospec(discord.StageChannel, instance=True)
    stage.members, stage.user_limit = [], 0
    interaction = mock_interaction(user_id=7)
    interaction.user.voice.channel = stage
    bot.playback.audience_on.return_value = True
    bot.playback.connected_channel.return_value = stage
    bot.services.speech.later.side_effect = CooldownError(3.0)
    with pytest.raises(CooldownError):
        await run_speak(Speak(bot), interaction, "hi", None, None, None, None, True)
    interaction.response.defer.assert_not_awaited()


def on_a_stage(bot: Any) -> Any:
    stage = create_autospec(discord.StageChannel, instance=True)
    stage.members, stage.user_limit = [], 0
    interaction = mock_interaction(user_id=7)
    interaction.user.voice.channel = stage
    bot.playback.audience_on.return_value = True
    bot.playback.connected_channel.return_value = stage
    return interaction


async def test_in_a_stages_audience_a_cooldown_from_another_process_is_refused_first(
    bot: Any,
) -> None:
    """With REDIS_URL, the member's cooldown on any process refuses the message before
    anything is deferred or held, and its calls are given back to the quota."""
    interaction = on_a_stage(bot)
    turns = create_autospec(RedisTurns, instance=True)
    turns.take.side_effect = CooldownError(4.0)
    bot.services.speech.source.turns = turns
    with pytest.raises(CooldownError):
        await run_speak(Speak(bot), interaction, "hi", None, None, None, None, True)
    admission = bot.services.speech.admit.return_value
    turns.take.assert_awaited_once_with(admission.requester, cooldown_only=True)
    bot.services.speech.later.assert_not_called()
    admission.release.assert_called_once_with()
    interaction.response.defer.assert_not_awaited()


async def test_in_a_stages_audience_a_local_refusal_gives_the_cluster_cooldown_back(
    bot: Any,
) -> None:
    interaction = on_a_stage(bot)
    turns = create_autospec(RedisTurns, instance=True)
    turn = create_autospec(ClusterTurn, instance=True)
    turns.take.return_value = turn
    bot.services.speech.source.turns = turns
    bot.services.speech.later.side_effect = CooldownError(3.0)
    with pytest.raises(CooldownError):
        await run_speak(Speak(bot), interaction, "hi", None, None, None, None, True)
    turn.give_back.assert_awaited_once_with()
    interaction.response.defer.assert_not_awaited()
