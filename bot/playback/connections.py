"""Voice connections and their players, one per server, that never outlive their connection.

The bot leaves when no human is left in its channel or after an idle time, follows a move,
and cleans up when it is disconnected, so no player or connection leaks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import discord

from bot.errors import BotError, VoicePermissionError
from bot.playback.player import GuildPlayer, Utterance
from bot.playback.source import dave_supported

__all__ = ["VoiceManager", "VoiceTarget", "humans_in"]

log = logging.getLogger(__name__)

VoiceTarget = discord.VoiceChannel | discord.StageChannel


def humans_in(channel: VoiceTarget) -> list[discord.Member]:
    return [member for member in channel.members if not member.bot]


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
        on_error: Callable[[Utterance, BotError], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.idle_timeout = idle_timeout
        self.max_queue = max_queue
        self._on_error = on_error
        self.players: dict[int, GuildPlayer] = {}
        if not dave_supported():
            log.warning("The davey package is missing: end-to-end encrypted voice will fail")

    def player(self, guild_id: int) -> GuildPlayer | None:
        player = self.players.get(guild_id)
        if player is not None and player.closed:
            self.players.pop(guild_id, None)
            return None
        return player

    def connected_channel(self, guild: discord.Guild) -> VoiceTarget | None:
        client = guild.voice_client
        if isinstance(client, discord.VoiceClient) and client.is_connected():
            channel = client.channel
            if isinstance(channel, discord.VoiceChannel | discord.StageChannel):
                return channel
        return None

    async def join(self, channel: VoiceTarget) -> GuildPlayer:
        """Connect (or move) to `channel` and return its server's player."""
        guild = channel.guild
        permissions = channel.permissions_for(guild.me)
        if not (permissions.connect and permissions.speak):
            raise VoicePermissionError(channel.mention)
        client = guild.voice_client
        if isinstance(client, discord.VoiceClient) and client.is_connected():
            if client.channel != channel:
                await client.move_to(channel)
        else:
            if client is not None:  # A half-dead connection from before: clear it first.
                await client.disconnect(force=True)
            client = await channel.connect(self_deaf=True, timeout=20.0, reconnect=True)
        player = self.player(guild.id)
        if player is None or player.voice is not client:
            if player is not None:
                await player.close()
            player = GuildPlayer(
                guild.id,
                client,
                idle_timeout=self.idle_timeout,
                max_queue=self.max_queue,
                on_idle=self._idle,
                on_error=self._on_error,
            )
            self.players[guild.id] = player
        log.info("Guild %s: in voice channel %s", guild.id, channel.id)
        return player

    async def leave(self, guild: discord.Guild, reason: str = "asked") -> bool:
        """Close the player and disconnect; True if there was something to leave."""
        player = self.players.pop(guild.id, None)
        if player is not None:
            await player.close()
        client = guild.voice_client
        if client is not None:
            await client.disconnect(force=False)
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

    async def on_voice_state_update(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        guild = member.guild
        if self.client.user is not None and member.id == self.client.user.id:
            if after.channel is None:  # Kicked, or the channel was deleted.
                player = self.players.pop(guild.id, None)
                if player is not None:
                    await player.close()
                    log.info("Guild %s: disconnected from voice; player cleaned up", guild.id)
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
