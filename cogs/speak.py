"""`/speak` and "Speak this message": text in, Ogg Opus out, with a live place in the queue."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.audio import Audio
from bot.errors import BotError, InvalidRequestError, NotInVoiceError
from bot.locales import line
from bot.playback.connections import VoiceTarget
from bot.playback.player import GuildPlayer, Utterance
from bot.playback.presence import bring_bot, check_voice_target, voice_channel_of
from bot.playback.stage import waiting_time
from bot.speech.access import Caller
from bot.speech.cleanup import CleanupOptions, clean_message
from bot.speech.control import estimate_seconds
from bot.speech.request import SpeechRequest
from bot.storage import GuildSettings
from bot.synthesis.service import Clip, Destination, SpeakOptions
from bot.synthesis.stream import SpeechStream
from bot.tree import NO_MENTIONS, locale_of, send_error
from cogs._answers import edit_answer, only_mentioning, reply_window, tell_in_channel
from cogs._shared import (
    caller_of,
    facts_from_message,
    localized,
    say,
    style_autocomplete,
    voice_autocomplete,
)
from cogs._speak_lines import (
    PROGRESS_EDIT_INTERVAL,
    ProgressReporter,
    playing_line,
    progress_line,
    result_line,
)
from cogs._voice_message import (
    can_reply,
    can_send_voice_messages,
    check_member_may_send_voice_messages,
)
from cogs._voice_message import send as send_voice_message

if TYPE_CHECKING:
    from bot.app import TTSBot

__all__ = [
    "PROGRESS_EDIT_INTERVAL",
    "ProgressReporter",
    "Speak",
    "progress_line",
    "result_line",
    "setup",
]

log = logging.getLogger(__name__)


class Speak(commands.Cog):
    def __init__(self, bot: TTSBot) -> None:
        self.bot = bot
        self.speak_message_menu = app_commands.ContextMenu(
            name="Speak this message", callback=self.speak_message
        )

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.speak_message_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(
            self.speak_message_menu.name, type=self.speak_message_menu.type
        )

    @app_commands.guild_only()
    @app_commands.command(name="speak", description="Turn text into lifelike speech")
    @app_commands.describe(
        text="What to say. For two speakers write “Name1: … / Name2: …”",
        voice="The voice (type to search the 30 voices)",
        voice_2="A second voice, for a two-speaker dialogue",
        temperature="0 to 2: 0.4 is steady, 0.7 lively",
        style="How to say it: cheerful, whispering, like a pirate… (free text)",
        play="Play it in your voice channel (default: when I'm already there)",
        fresh="Make a new take instead of reusing the same speech made before",
        voice_message="Post it as a voice message (default: your /voice set choice)",
        pace="Slow, normal or fast, asked of Gemini as a direction (default: your /voice set)",
    )
    @app_commands.autocomplete(
        voice=voice_autocomplete, voice_2=voice_autocomplete, style=style_autocomplete
    )
    async def speak(
        self,
        interaction: discord.Interaction[TTSBot],
        text: str,
        voice: str | None = None,
        voice_2: str | None = None,
        temperature: app_commands.Range[float, 0.0, 2.0] | None = None,
        style: str | None = None,
        play: bool | None = None,
        fresh: bool = False,
        voice_message: bool | None = None,
        pace: Literal["slow", "normal", "fast"] | None = None,
    ) -> None:
        if voice_message and play:
            raise InvalidRequestError(line("speak.voice_message_or_play"))
        options = SpeakOptions(
            voice=voice,
            voice_2=voice_2,
            temperature=temperature,
            style=style,
            pace=pace,
            fresh=fresh,
        )
        await self.respond(interaction, text, options, play=play, voice_message=voice_message)

    @app_commands.guild_only()
    async def speak_message(
        self, interaction: discord.Interaction[TTSBot], message: discord.Message
    ) -> None:
        # The same clean-up narration uses: spoilers and code are not read, custom emoji by
        # name, mentions by name; a long message is read from its start, "… and more".
        assert interaction.guild_id is not None
        guild = await self.bot.services.storage.get_guild(interaction.guild_id)
        limit = self.bot.services.speech.text_limit(guild)
        text = clean_message(
            facts_from_message(message),
            CleanupOptions(emoji=guild.narration_emoji, max_length=limit),
        )
        if not text:
            raise BotError(user_message=line("speak.nothing_to_speak"))
        await self.respond(interaction, text, SpeakOptions(), source=message.jump_url, guild=guild)

    async def respond(
        self,
        interaction: discord.Interaction[TTSBot],
        text: str,
        options: SpeakOptions,
        *,
        play: bool | None = None,
        source: str | None = None,
        guild: GuildSettings | None = None,
        voice_message: bool | None = None,
    ) -> None:
        """Both commands land here: the pipeline applies the member's defaults and the
        server's rules, then this defers within Discord's 3 s, shows progress, and plays or
        posts the audio (as a file, or as a voice message)."""
        target = None if voice_message else self.voice_target(interaction, play)
        caller = caller_of(interaction.user, interaction.guild_id)
        chosen = voice_message
        if target is None and voice_message is None and source is None:
            voice_message = await self.bot.services.speech.prefers_voice_message(caller)
        if voice_message:
            check_member_may_send_voice_messages(interaction, chosen=chosen is not None)
        with self.bot.responding():
            if target is not None and self.bot.playback.audience_on(target):
                await self.wait_for_the_stage(interaction, target, caller, text, options, guild)
                return
            speech = self.bot.services.speech
            # Refusals (input, rules, quota) raise here: private, free.
            admission = await speech.admit(
                caller,
                text,
                options,
                destination=Destination.VOICE if target else Destination.CHAT,
                guild=guild,
                within=None if target else reply_window(interaction),
            )
            # This process's cooldown and caps, then (briefly) the cluster's, with REDIS_URL.
            if await speech.source.refusal(admission.requester) is None:
                # Deferred before the first chunk is looked for: the cache's shared tier and
                # the calls in flight may be in Redis, and Discord waits 3 s for an answer.
                try:
                    deferral = await self.defer(interaction)
                except BaseException:
                    admission.release()
                    raise
                stream = await speech.start(admission)
            else:
                # A cooldown or a full queue: found out privately, as before the deferral (a
                # message already in the cache is still served, as it needs no call).
                stream = await speech.start(admission)
                try:
                    deferral = await self.defer(interaction)
                except BaseException:
                    stream.cancel()
                    raise
            requests = stream.requests
            progress = ProgressReporter(interaction, stream)
            progress.start()
            try:
                if target is not None:
                    await self.play(interaction, target, stream)
                else:
                    audios = await stream.collect()
                    await progress.stop()
                    if voice_message:
                        answer_id = deferral.message_id if deferral is not None else None
                        await self.deliver_voice_message(
                            interaction, audios, requests[0], answer_id
                        )
                        return
                    clip = await self.bot.services.speech.render_many(audios, requests[0])
                    await self.deliver(
                        interaction, result_line(requests[0], clip.duration, source), clip
                    )
            except BotError as exc:
                stream.cancel()
                await progress.stop()
                await send_error(interaction, exc.localized(locale_of(interaction)))
            finally:
                await progress.stop()

    @staticmethod
    async def defer(
        interaction: discord.Interaction[TTSBot],
    ) -> discord.InteractionCallbackResponse[TTSBot] | None:
        """Public, a voice message's too: it says who asked for the voice message (which has
        no text of its own) and, should the voice message not be allowed, the file takes its
        place. A private deferral would make that file private as well."""
        return await interaction.response.defer(thinking=True)

    async def deliver(
        self, interaction: discord.Interaction[TTSBot], content: str, clip: Clip
    ) -> None:
        """Attach the file to the public answer; if the token has expired anyway (a message
        that took the whole window), post it in the channel instead, naming the member."""

        def file() -> discord.File:
            return discord.File(io.BytesIO(clip.data), filename=clip.filename)

        if await edit_answer(interaction, content, attachments=[file()]):
            return
        channel = interaction.channel
        if not isinstance(channel, discord.abc.Messageable):
            raise BotError(user_message=line("speak.too_late"))
        user = interaction.user
        await channel.send(
            content=f"{user.mention} {content}", file=file(), allowed_mentions=only_mentioning(user)
        )

    async def deliver_voice_message(
        self,
        interaction: discord.Interaction[TTSBot],
        audios: list[Audio],
        request: SpeechRequest,
        answer_id: int | None,
    ) -> None:
        """Post the speech as a voice message (a new channel message: one cannot be an edit)
        in reply to the public answer, which names the member; where the bot may not, or
        Discord refuses, the normal file goes on the public answer instead, saying why."""
        speech = self.bot.services.speech
        channel = interaction.channel
        guild = interaction.guild
        me = guild.me if guild is not None else None
        if interaction.channel_id is None or not can_send_voice_messages(channel, me):
            why = say(interaction, "speak.no_voice_message_permission")
        else:
            message = await speech.voice_message(audios)
            reply_to = answer_id if can_reply(channel, me) else None
            try:
                await send_voice_message(
                    self.bot.http, interaction.channel_id, message, reply_to=reply_to
                )
            except discord.HTTPException as exc:
                log.info("Voice message refused (%s %s); posting a file", exc.status, exc.code)
                reason = exc.text or say(interaction, "speak.no_reason")
                why = say(
                    interaction, "speak.voice_message_refused", status=exc.status, reason=reason
                )
            else:
                details = result_line(request, message.duration).removeprefix("🔊 ")
                who = interaction.user.mention
                # Once posted, an expired token is no loss: the voice message is there.
                await edit_answer(
                    interaction,
                    say(interaction, "speak.voice_message_for", member=who, details=details),
                )
                return
        clip = await speech.render_many(audios, request)
        answer = f"{result_line(request, clip.duration)}\n" + say(
            interaction, "speak.as_file", why=why
        )
        await self.deliver(interaction, answer, clip)

    def voice_target(
        self, interaction: discord.Interaction[TTSBot], play: bool | None
    ) -> VoiceTarget | None:
        """Where to play, decided before anything is spent: a member who asks to hear it in
        voice but is in no voice channel, or where the bot cannot speak or may not go, is
        told so for free."""
        channel = voice_channel_of(interaction.user)
        if play is False or interaction.guild is None:
            return None
        if play is True and channel is None:
            raise NotInVoiceError()
        if play is True or (
            channel is not None
            and self.bot.playback.connected_channel(interaction.guild) == channel
        ):
            assert channel is not None
            check_voice_target(self.bot.playback, interaction.user, channel)
            return channel
        return None

    async def play(
        self, interaction: discord.Interaction[TTSBot], channel: VoiceTarget, stream: SpeechStream
    ) -> None:
        """Wait for the first chunk only, then queue the message to play while the rest of it
        is still being made."""
        audios = stream.audio()
        first = await anext(audios)
        request = stream.requests[0]
        first_clip = await self.bot.services.speech.render(first, request)

        async def clips() -> AsyncIterator[bytes]:
            yield first_clip.data
            async for clip in self.bot.services.speech.ogg_clips(audios, request):
                yield clip

        player, note = await self.bring(channel)
        place = player.enqueue(self.utterance(interaction, stream, clips()))
        # With more parts still being made, the total length is not known yet.
        several = stream.total > 1
        parts = say(interaction, "speak.parts", count=stream.total) if several else ""
        duration = None if several else first_clip.duration
        details = result_line(request, duration).removeprefix("🔊 ") + parts
        warning = f"\n⚠️ {localized(interaction, note)}" if note else ""
        answer = playing_line(interaction, channel, place, details) + warning
        # After a long queue the token may have expired: the speech plays all the same, and
        # only a warning is worth telling in the channel instead.
        if not await edit_answer(interaction, answer) and note:
            await tell_in_channel(interaction, f"⚠️ {localized(interaction, note)}")

    async def wait_for_the_stage(
        self,
        interaction: discord.Interaction[TTSBot],
        channel: VoiceTarget,
        caller: Caller,
        text: str,
        options: SpeakOptions,
        guild: GuildSettings | None,
    ) -> None:
        """Where the bot is (or will be) in a Stage's audience, nothing is made for nobody:
        the message is accepted now (every rule and the cooldown, refusals private and free)
        and queued unmade; its calls start once a stage moderator invites the bot, and it is
        heard from its start. The player gives it up, and tells the member, past the wait."""
        speech = self.bot.services.speech
        admission = await speech.admit(
            caller, text, options, destination=Destination.VOICE, guild=guild
        )
        # The member's cooldown across processes too (REDIS_URL), as the scheduler's here.
        turns, turn = speech.source.turns, None
        try:
            if turns is not None:
                turn = await turns.take(admission.requester, cooldown_only=True)
            stream = speech.later(admission)
        except BaseException:
            admission.release()
            if turn is not None:
                await turn.give_back()
            raise
        try:
            await interaction.response.defer(thinking=True)
        except BaseException:
            stream.cancel()
            raise
        try:
            player, note = await self.bring(channel)
            request = stream.requests[0]
            clips = speech.ogg_clips(stream.audio(), request)
            utterance = self.utterance(interaction, stream, clips)
            utterance.start = stream.start
            place = player.enqueue(utterance)
        except BotError as exc:
            stream.cancel()
            await send_error(interaction, exc.localized(locale_of(interaction)))
            return
        parts = say(interaction, "speak.parts", count=stream.total) if stream.total > 1 else ""
        details = result_line(request, None).removeprefix("🔊 ") + parts
        if not player.held:  # Invited in the meantime: it is being made now.
            content = playing_line(interaction, channel, place, details)
        else:
            why = (
                localized(interaction, note)
                if note
                else say(interaction, "speak.in_audience", channel=channel.mention)
            )
            wait = localized(interaction, waiting_time(player.stage.wait))
            content = say(
                interaction,
                "speak.waiting_stage",
                channel=channel.mention,
                details=details,
                why=why,
                wait=wait,
            )
        await interaction.edit_original_response(content=content, allowed_mentions=NO_MENTIONS)

    async def bring(self, channel: VoiceTarget) -> tuple[GuildPlayer, str | None]:
        """The player in `channel`, bringing the bot there if it is elsewhere or nowhere."""
        player = self.bot.playback.player(channel.guild.id)
        if player is None or self.bot.playback.connected_channel(channel.guild) != channel:
            return await bring_bot(self.bot.playback, channel)
        return player, None

    def utterance(
        self,
        interaction: discord.Interaction[TTSBot],
        stream: SpeechStream,
        clips: AsyncIterator[bytes],
    ) -> Utterance:
        """The message as the player queues it: who (never what), its clips, and how to
        withdraw its calls and to tell the member (privately) what became of it."""

        async def notify(message: str) -> None:
            await interaction.followup.send(
                localized(interaction, message), ephemeral=True, allowed_mentions=NO_MENTIONS
            )

        return Utterance(
            label=interaction.user.display_name,
            user_id=interaction.user.id,
            clips=clips,
            on_close=stream.cancel,
            notify=notify,
            seconds=sum(estimate_seconds(r.text) for r in stream.requests),
        )


async def setup(bot: TTSBot) -> None:
    await bot.add_cog(Speak(bot))
