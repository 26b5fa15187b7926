"""Joining, leaving and cleaning up voice connections, with discord objects spec'd."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import create_autospec

import discord
import pytest

from bot.errors import ChannelFullError, VoicePermissionError
from bot.playback import connections
from bot.playback.connections import DISCONNECTED, VoiceManager
from bot.playback.dave import DAVE_LOST
from bot.playback.player import GuildPlayer, Utterance

BOT_ID = 1


def member(user_id: int, *, bot: bool = False, guild: Any = None) -> Any:
    m = create_autospec(discord.Member, instance=True)
    m.id = user_id
    m.bot = bot
    m.guild = guild
    return m


def voice_state(channel: Any) -> Any:
    state = create_autospec(discord.VoiceState, instance=True)
    state.channel = channel
    return state


class World:
    """A guild with two voice channels and a spec'd VoiceClient that `connect` returns."""

    def __init__(self) -> None:
        self.client = create_autospec(discord.Client, instance=True)
        self.client.user = member(BOT_ID, bot=True)
        self.guild = create_autospec(discord.Guild, instance=True)
        self.guild.id = 10
        self.guild.me = member(BOT_ID, bot=True, guild=self.guild)
        self.guild.voice_client = None
        self.client.get_guild.return_value = self.guild
        self.general = self.channel(100, "General")
        self.music = self.channel(101, "Music")
        self.voice_client: Any = None
        self.connects = 0

        self.connect_delay = 0.0

        async def connect(**kwargs: Any) -> Any:
            # Like discord.py: every connect makes a new VoiceClient.
            await asyncio.sleep(self.connect_delay)
            client = create_autospec(discord.VoiceClient, instance=True)
            client.is_connected.return_value = True
            client.channel = self.general

            async def disconnect(*, force: bool = False) -> None:
                self.guild.voice_client = None
                client.is_connected.return_value = False

            async def move_to(channel: Any, **kwargs: Any) -> None:
                client.channel = channel

            client.disconnect.side_effect = disconnect
            client.move_to.side_effect = move_to
            self.guild.voice_client = self.voice_client = client
            self.connect_kwargs = kwargs
            self.connects += 1
            return client

        self.general.connect.side_effect = connect

    def channel(self, channel_id: int, name: str) -> Any:
        channel = create_autospec(discord.VoiceChannel, instance=True)
        channel.id = channel_id
        channel.guild = self.guild
        channel.mention = f"<#{channel_id}>"
        channel.members = []
        channel.user_limit = 0
        permissions = discord.Permissions.none()
        permissions.update(connect=True, speak=True)
        channel.permissions_for.return_value = permissions
        return channel


@pytest.fixture
async def world() -> World:
    return World()


async def test_join_connects_deafened_and_makes_one_player(world: World) -> None:
    manager = VoiceManager(world.client, idle_timeout=60)
    player = await manager.join(world.general)
    assert world.connect_kwargs["self_deaf"] is True
    assert manager.player(world.guild.id) is player
    assert await manager.join(world.general) is player  # Joining again reuses it.
    world.general.connect.assert_awaited_once()
    await manager.close()
    assert manager.players == {}
    world.voice_client.disconnect.assert_awaited()


async def test_without_davey_the_warning_says_voice_will_not_work_at_all(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """discord.py refuses every voice connection without davey, not only encrypted ones."""
    monkeypatch.setattr(connections, "dave_supported", lambda: False)
    with caplog.at_level(logging.WARNING, logger="bot.playback.connections"):
        VoiceManager(world.client)
    (record,) = caplog.records
    assert "voice will not work at all" in record.getMessage()
    assert "cannot speak in any voice channel" in record.getMessage()
    assert "end-to-end encrypted voice will fail" not in record.getMessage()


async def test_join_follows_the_member_to_another_channel(world: World) -> None:
    manager = VoiceManager(world.client, idle_timeout=60)
    player = await manager.join(world.general)
    assert await manager.join(world.music) is player
    world.voice_client.move_to.assert_awaited_once_with(world.music)
    await manager.close()


async def test_join_without_permission_is_refused_before_connecting(world: World) -> None:
    world.general.permissions_for.return_value = discord.Permissions.none()
    manager = VoiceManager(world.client)
    with pytest.raises(VoicePermissionError) as info:
        await manager.join(world.general)
    assert "Connect and Speak" in info.value.user_message
    world.general.connect.assert_not_awaited()


async def test_leaves_when_the_last_human_goes(world: World) -> None:
    manager = VoiceManager(world.client, idle_timeout=60)
    await manager.join(world.general)
    alice, other_bot = member(2, guild=world.guild), member(3, bot=True, guild=world.guild)
    world.general.members = [world.guild.me, alice, other_bot]
    # Someone else moving about elsewhere changes nothing.
    await manager.on_voice_state_update(
        member(4, guild=world.guild), voice_state(None), voice_state(world.music)
    )
    assert manager.player(world.guild.id) is not None
    # Alice leaves: only bots remain.
    world.general.members = [world.guild.me, other_bot]
    await manager.on_voice_state_update(alice, voice_state(world.general), voice_state(None))
    assert manager.player(world.guild.id) is None
    world.voice_client.disconnect.assert_awaited_once()


async def test_stays_while_a_human_remains(world: World) -> None:
    manager = VoiceManager(world.client, idle_timeout=60)
    await manager.join(world.general)
    alice, bob = member(2, guild=world.guild), member(3, guild=world.guild)
    world.general.members = [world.guild.me, bob]
    await manager.on_voice_state_update(alice, voice_state(world.general), voice_state(None))
    assert manager.player(world.guild.id) is not None
    await manager.close()


async def test_being_disconnected_cleans_up_the_player(world: World) -> None:
    manager = VoiceManager(world.client, idle_timeout=60)
    player = await manager.join(world.general)
    world.guild.voice_client = None
    await manager.on_voice_state_update(
        world.guild.me, voice_state(world.general), voice_state(None)
    )
    assert player.closed
    assert manager.players == {}
    # A later /join makes a fresh connection and player: nothing leaked or reused half-dead.
    again = await manager.join(world.general)
    assert again is not player
    assert world.connects == 2
    await manager.close()


async def test_a_re_handshaking_connection_is_kept_and_counts_as_in_the_channel(
    world: World,
) -> None:
    manager = VoiceManager(world.client, idle_timeout=60, reconnect_timeout=10)
    first = await manager.join(world.general)
    client = world.voice_client
    client.is_connected.return_value = False  # A voice server change: a round trip or two.
    assert manager.connected_channel(world.guild) == world.general

    async def back() -> None:
        await asyncio.sleep(0.2)
        client.is_connected.return_value = True

    task = asyncio.create_task(back())
    assert await manager.join(world.general) is first
    await task
    client.disconnect.assert_not_awaited()
    assert world.connects == 1
    assert not first.closed
    await manager.close()


async def test_a_connection_dead_past_the_bound_is_replaced(world: World) -> None:
    manager = VoiceManager(world.client, idle_timeout=60, reconnect_timeout=0.1)
    first = await manager.join(world.general)
    stale = world.voice_client
    stale.is_connected.return_value = False  # Dropped without an event, never back.
    second = await manager.join(world.general)
    assert second is not first
    assert first.closed
    stale.disconnect.assert_awaited_once_with(force=True)  # Cleared before reconnecting.
    assert world.connects == 2
    await manager.close()


async def test_two_joins_at_the_same_moment_connect_once(world: World) -> None:
    world.connect_delay = 0.1
    manager = VoiceManager(world.client, idle_timeout=60)
    one, two = await asyncio.gather(manager.join(world.general), manager.join(world.general))
    assert one is two
    assert world.connects == 1
    world.voice_client.disconnect.assert_not_awaited()
    await manager.close()


async def test_a_full_channel_is_refused_before_connecting(world: World) -> None:
    world.general.user_limit = 2
    world.general.members = [member(2), member(3)]
    manager = VoiceManager(world.client)
    with pytest.raises(ChannelFullError):
        await manager.join(world.general)
    world.general.connect.assert_not_awaited()
    # Members who may move others may also fill a channel past its limit.
    world.general.permissions_for.return_value.update(move_members=True)
    await manager.join(world.general)
    await manager.close()


async def test_on_a_stage_the_bot_becomes_a_speaker_or_raises_its_hand(world: World) -> None:
    stage = create_autospec(discord.StageChannel, instance=True)
    stage.guild, stage.mention = world.guild, "<#200>"
    manager = VoiceManager(world.client)
    stage.permissions_for.return_value = discord.Permissions(mute_members=True, connect=True)
    assert await manager.take_the_stage(stage) is None
    world.guild.me.edit.assert_awaited_once_with(suppress=False)
    stage.permissions_for.return_value = discord.Permissions(connect=True)
    line = await manager.take_the_stage(stage)
    assert line is not None
    assert "raised my hand" in line
    world.guild.me.request_to_speak.assert_awaited_once_with()
    assert await manager.take_the_stage(world.general) is None


def stage_state(stage: Any, *, suppress: bool) -> Any:
    state = voice_state(stage)
    state.suppress = suppress
    return state


def a_stage(world: World, *, mute_members: bool = False) -> Any:
    """A Stage the bot may join (the world's `connect`), with or without Mute Members."""
    stage = create_autospec(discord.StageChannel, instance=True)
    stage.id, stage.guild, stage.mention = 200, world.guild, "<#200>"
    stage.members, stage.user_limit = [], 0
    stage.permissions_for.return_value = discord.Permissions(
        connect=True, mute_members=mute_members
    )
    stage.connect.side_effect = world.general.connect.side_effect
    return stage


async def test_the_bots_own_voice_state_on_a_stage_holds_and_releases_its_player(
    world: World,
) -> None:
    stage = a_stage(world)
    manager = VoiceManager(world.client, idle_timeout=60)
    # Discord puts the bot in the audience as it joins, before its player exists.
    world.guild.me.voice = stage_state(stage, suppress=True)
    player = await manager.join(stage)
    assert held(player)
    invited = stage_state(stage, suppress=False)
    await manager.on_voice_state_update(world.guild.me, world.guild.me.voice, invited)
    assert not held(player)
    # A moderator sends it back to the audience: held again.
    audience = stage_state(stage, suppress=True)
    await manager.on_voice_state_update(world.guild.me, invited, audience)
    assert held(player)
    # Suppressed in a plain voice channel (AFK) is not a Stage's audience.
    afk = stage_state(world.general, suppress=True)
    await manager.on_voice_state_update(world.guild.me, audience, afk)
    assert not held(player)
    await manager.close()


def held(player: GuildPlayer) -> bool:
    """Read afresh (a voice state update changes it)."""
    return player.held


async def test_speech_for_a_stage_waits_where_the_bot_would_sit_in_the_audience(
    world: World,
) -> None:
    manager = VoiceManager(world.client)
    stage = a_stage(world)
    world.guild.me.voice = None
    assert manager.audience_on(stage)  # Not there, and can only raise its hand.
    assert not manager.audience_on(a_stage(world, mute_members=True))  # Becomes a speaker.
    world.guild.me.voice = stage_state(stage, suppress=True)
    assert manager.audience_on(stage)
    world.guild.me.voice = stage_state(stage, suppress=False)  # Invited already.
    assert not manager.audience_on(stage)
    assert not manager.audience_on(world.general)


async def test_being_disconnected_tells_the_members_who_were_waiting(world: World) -> None:
    manager = VoiceManager(world.client, idle_timeout=60)
    player = await manager.join(world.general)
    world.voice_client.is_connected.return_value = False  # Nothing plays: all stay queued.
    lines: list[str] = []

    async def notify(line: str) -> None:
        lines.append(line)

    player.enqueue(Utterance(label="a", user_id=2, clips=_no_clips(), notify=notify))
    world.guild.voice_client = None
    await manager.on_voice_state_update(
        world.guild.me, voice_state(world.general), voice_state(None)
    )
    assert player.closed
    assert lines == [f"⚠️ {DISCONNECTED}"]


async def test_leaving_because_dave_failed_tells_the_waiting_members_why(world: World) -> None:
    manager = VoiceManager(world.client, idle_timeout=60)
    player = await manager.join(world.general)
    world.voice_client.is_connected.return_value = False
    lines: list[str] = []

    async def notify(line: str) -> None:
        lines.append(line)

    player.enqueue(Utterance(label="a", user_id=2, clips=_no_clips(), notify=notify))
    world.voice_client.dave_gave_up = True
    world.guild.voice_client = None
    await manager.on_voice_state_update(
        world.guild.me, voice_state(world.general), voice_state(None)
    )
    assert lines == [f"⚠️ {DAVE_LOST}"]


async def _no_clips() -> AsyncIterator[bytes]:
    nothing: list[bytes] = []
    for clip in nothing:
        yield clip


async def test_idle_timeout_leaves(world: World) -> None:
    manager = VoiceManager(world.client, idle_timeout=0.05)
    player = await manager.join(world.general)
    async with asyncio.timeout(5):
        while manager.players:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert player.closed
    world.voice_client.disconnect.assert_awaited()


async def test_a_join_during_a_leave_waits_for_it_then_connects_anew(world: World) -> None:
    """A member moves from the bot's channel (which empties it, so the bot leaves) and runs
    /join at once: the join must not take the disconnecting client for one re-handshaking
    and wait out the reconnect bound for it."""
    manager = VoiceManager(world.client, idle_timeout=60, reconnect_timeout=5.0)
    await manager.join(world.general)
    old = world.voice_client

    async def slow_disconnect(*, force: bool = False) -> None:
        old.is_connected.return_value = False
        await asyncio.sleep(0.2)  # Waiting for Discord to confirm.
        world.guild.voice_client = None

    old.disconnect.side_effect = slow_disconnect
    leaving = asyncio.create_task(manager.leave(world.guild, "no one left to listen"))
    await asyncio.sleep(0)  # The leave has started disconnecting.
    async with asyncio.timeout(2):
        player = await manager.join(world.general)
    assert await leaving
    assert world.connects == 2
    assert world.voice_client is not old
    assert player.voice is world.voice_client
    await manager.close()
