"""Voice connections and their players, one per server, that never outlive their connection.

The bot leaves when no human is left in its channel or after an idle time, follows a move,
and cleans up when it is disconnected, so no player or connection leaks.

"In a channel" means the bot has a voice client there, connected or re-handshaking: on
Discord a voice server change or a resume takes a round trip or several, and the bot is
still in the channel for everyone listening. Joins and leaves are serialised per server, so
two at the same moment cannot disconnect each other, and a join during a leave connects anew.

On a Stage the bot's own voice state says whether it is heard: while it is in the audience
its player holds everything (`bot.playback.stage`), and an invitation to speak releases it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import discord

from bot.errors import BotError, ChannelFullError, VoicePermissionError
from bot.locales import line
from bot.playback.dave import DAVE_LOST, DaveVoiceClient
from bot.playback.player import GuildPlayer, Utterance, wait_until_connected
from bot.playback.source import dave_supported
from bot.playback.stage import STAGE_WAIT, in_audience

__all__ = ["DISCONNECTED", "VoiceManager", "VoiceTarget", "check_joinable", "humans_in"]

log = logging.getLogger(__name__)

VoiceTarget = discord.VoiceChannel | discord.StageChannel

#: Told to members whose messages were waiting when someone disconnected the bot.
DISCONNECTED = line("playback.disconnected")


def humans_in(channel: VoiceTarget) -> list[discord.Member]:
    return [member for member in channel.members if not member.bot]


def check_joinable(channel: VoiceTarget) -> None:
    """Raise why the bot cannot speak in `channel`, before anything is spent on speech.

    Connect is needed everywhere, Speak in a voice channel; a full channel lets in only
    members who may move others. On a Stage the bot becomes a speaker by itself with Mute
    Members, and otherwise raises its hand; either way it needs to be able to connect.
    """
    guild = channel.guild
    permissions = channel.permissions_for(guild.me)
    if not permissions.connect or (
        isinstance(channel, discord.VoiceChannel) and not permissions.speak
    ):
        raise VoicePermissionError(channel.mention)
    if guild.me in channel.members:
        return
    limit = channel.user_limit
    if limit and len(channel.members) >= limit and not permissions.move_members:
        raise ChannelFullError(channel.mention)


class VoiceManager:
    """One voice connection and one player per server: joining, moving, leaving when nobody
    is left to listen or nothing is said for a while, and cleaning up after a lost
    connection, so cogs ask "play this here" and never handle discord.py's voice state."""

    def __init__(
        self,
        client: discord.Client,
        *,
        idle_timeout: float = 300.0,
        max_queue: int = 50,
        reconnect_timeout: float = 30.0,
        stage_wait: float = STAGE_WAIT,
        on_error: Callable[[Utterance, BotError], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.idle_timeout = idle_timeout
        self.max_queue = max_queue
        self.reconnect_timeout = reconnect_timeout
        self.stage_wait = stage_wait
        self._on_error = on_error
        self.players: dict[int, GuildPlayer] = {}
        self._joining: dict[int, asyncio.Lock] = {}
        if not dave_supported():
            # Since Discord requires end-to-end encrypted voice (DAVE), discord.py refuses
            # every voice connection without davey, not only the encrypted ones.
            log.warning(
                "The davey package is missing, so voice will not work at all: discord.py "
                "refuses every voice connection without it and the bot cannot speak in any "
                "voice channel. Install discord.py[voice] (`python -m bot check` tells)."
            )

    def player(self, guild_id: int) -> GuildPlayer | None:
        player = self.players.get(guild_id)
        if player is not None and player.closed:
            self.players.pop(guild_id, None)
            return None
        return player

    def connected_channel(self, guild: discord.Guild) -> VoiceTarget | None:
        """The channel the bot is in: connected, or re-handshaking (a voice server change,
        a resume, its own move), which is still "in the channel" for its listeners."""
        client = guild.voice_client
        if isinstance(client, discord.VoiceClient):
            channel = client.channel
            if isinstance(channel, discord.VoiceChannel | discord.StageChannel):
                return channel
        return None

    async def join(self, channel: VoiceTarget) -> GuildPlayer:
        """Connect (or move) to `channel` and return its server's player; one at a time per
        server."""
        lock = self._joining.setdefault(channel.guild.id, asyncio.Lock())
        async with lock:
            return await self._join(channel)

    async def _join(self, channel: VoiceTarget) -> GuildPlayer:
        guild = channel.guild
        check_joinable(channel)
        client = guild.voice_client
        if isinstance(client, discord.VoiceClient) and not client.is_connected():
            # Re-handshaking, or dead without an event: give it the reconnect bound.
            await wait_until_connected(client, self.reconnect_timeout)
        if isinstance(client, discord.VoiceClient) and client.is_connected():
            if client.channel != channel:
                await client.move_to(channel)
        else:
            if client is not None:  # Dead past the bound: clear it before connecting anew.
                await client.disconnect(force=True)
            client = await channel.connect(
                self_deaf=True, timeout=20.0, reconnect=True, cls=DaveVoiceClient
            )
        player = self.player(guild.id)
        if player is None or player.voice is not client:
            if player is not None:
                await player.close(DISCONNECTED)
            player = GuildPlayer(
                guild.id,
                client,
                idle_timeout=self.idle_timeout,
                max_queue=self.max_queue,
                reconnect_timeout=self.reconnect_timeout,
                stage_wait=self.stage_wait,
                on_idle=self._idle,
                on_error=self._on_error,
                on_gone=self._gone,
            )
            self.players[guild.id] = player
        # The state Discord gave on joining (a Stage's audience) came before this player.
        _follow(player, guild.me.voice)
        log.info("Guild %s: in voice channel %s", guild.id, channel.id)
        return player

    def audience_on(self, channel: VoiceTarget) -> bool:
        """Whether speech for `channel` would reach nobody for now: it is a Stage where the
        bot sits in the audience, or would join without Mute Members (so can only raise its
        hand). Such speech waits for an invitation before anything is made for it."""
        if not isinstance(channel, discord.StageChannel):
            return False
        me = channel.guild.me
        voice = me.voice
        if voice is not None and voice.channel == channel:
            return in_audience(voice)
        return not channel.permissions_for(me).mute_members

    async def take_the_stage(self, channel: VoiceTarget) -> str | None:
        """On a Stage, become a speaker (with Mute Members) or raise the bot's hand.

        Returns a line for the member when the bot could not simply start speaking.
        """
        if not isinstance(channel, discord.StageChannel):
            return None
        me = channel.guild.me
        try:
            if channel.permissions_for(me).mute_members:
                await me.edit(suppress=False)
                return None
            await me.request_to_speak()
        except discord.HTTPException as exc:
            log.info("Guild %s: could not speak on the stage: %s", channel.guild.id, exc)
            return line("voice.stage_cannot_speak", channel=channel.mention)
        return line("voice.stage_hand_raised", channel=channel.mention)

    async def leave(self, guild: discord.Guild, reason: str = "asked") -> bool:
        """Close the player and disconnect; True if there was something to leave.

        Serialised with joins: a join that comes while the bot is disconnecting waits for
        the leave to end and connects anew, instead of taking the disconnecting client for
        one re-handshaking and waiting out the reconnect bound for it.
        """
        lock = self._joining.setdefault(guild.id, asyncio.Lock())
        async with lock:
            return await self._leave(guild, reason)

    async def _leave(self, guild: discord.Guild, reason: str) -> bool:
        player = self.players.pop(guild.id, None)
        if player is not None:
            await player.close()
        client = guild.voice_client
        if client is not None:
            await client.disconnect(force=True)
        if player is not None or client is not None:
            log.info("Guild %s: left voice (%s)", guild.id, reason)
            return True
        return False

    async def _idle(self, player: GuildPlayer) -> None:
        guild = self.client.get_guild(player.guild_id)
        if guild is not None:
            await self.leave(guild, "idle")
        else:
            self.players.pop(player.guild_id, None)

    async def _gone(self, player: GuildPlayer) -> None:
        """The player's connection never came back: forget it and clear the dead client."""
        if self.players.get(player.guild_id) is player:
            del self.players[player.guild_id]
        guild = self.client.get_guild(player.guild_id)
        client = guild.voice_client if guild is not None else None
        voice: object = player.voice
        if client is not None and client is voice:
            await client.disconnect(force=True)

    async def on_voice_state_update(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        guild = member.guild
        if self.client.user is not None and member.id == self.client.user.id:
            if after.channel is None:  # Kicked, the channel deleted, or DAVE given up.
                player = self.players.pop(guild.id, None)
                if player is not None:
                    gave_up = getattr(player.voice, "dave_gave_up", False)
                    await player.close(DAVE_LOST if gave_up else DISCONNECTED)
                    log.info("Guild %s: disconnected from voice; player cleaned up", guild.id)
                return
            player = self.player(guild.id)
            if player is not None:  # Invited to speak, or sent to a Stage's audience.
                _follow(player, after)
            return
        channel = self.connected_channel(guild)
        if channel is None or before.channel != channel or after.channel == channel:
            return
        if not humans_in(channel):
            await self.leave(guild, "no one left to listen")

    async def close(self) -> None:
        for guild_id in list(self.players):
            guild = self.client.get_guild(guild_id)
            if guild is not None:
                await self.leave(guild, "shutting down")
            else:
                player = self.players.pop(guild_id)
                await player.close()


def _follow(player: GuildPlayer, voice: discord.VoiceState | None) -> None:
    """Hold the player while the bot is in a Stage's audience; release it once it is not."""
    if in_audience(voice):
        player.hold()
    else:
        player.release()
