"""Voice controls follow who is listening, and /queue never shows text (issue 10, defects 3
and 9), through spec'd Discord objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest.mock import create_autospec

import discord
import pytest

from bot.config import Settings
from bot.errors import AccessDeniedError
from bot.playback.player import GuildPlayer, Utterance
from cogs.playback import Playback
from tests.helpers import make_member, mock_bot, mock_interaction


def human(user_id: int) -> Any:
    return make_member(user_id)


class Session:
    """The bot in #General with Alice listening, and a player saying Bob's message."""

    def __init__(self, bot: Any) -> None:
        self.guild = create_autospec(discord.Guild, instance=True)
        self.guild.id = 42
        self.channel = create_autospec(discord.VoiceChannel, instance=True)
        self.channel.mention = "<#100>"
        self.channel.permissions_for.return_value = discord.Permissions.none()
        self.alice = human(1)
        self.channel.members = [self.alice]
        self.player = create_autospec(GuildPlayer, instance=True)
        self.player.current = Utterance(label="bob", user_id=2, clips=_nothing(), seconds=4.0)
        self.player.queue = [
            Utterance(label="alice", user_id=1, clips=_nothing(), seconds=130.0),
        ]
        self.player.skip.return_value = True
        bot.playback.connected_channel.return_value = self.channel
        bot.playback.player.return_value = self.player
        bot.playback.leave.return_value = True

    def interaction(self, user: Any) -> Any:
        interaction = mock_interaction(user_id=user.id)
        interaction.user = user
        interaction.guild = self.guild
        return interaction


async def _nothing() -> Any:
    nothing: list[bytes] = []
    for item in nothing:
        yield item


@pytest.fixture
def bot(make_settings: Callable[..., Settings]) -> Any:
    return mock_bot(make_settings())


async def call(command: Any, cog: Playback, interaction: Any) -> None:
    await command.callback(cog, interaction)


async def test_someone_outside_the_session_cannot_stop_skip_or_send_the_bot_away(
    bot: Any,
) -> None:
    session = Session(bot)
    carol = human(3)  # In no voice channel at all.
    cog = Playback(bot)
    for command in (Playback.stop, Playback.skip, Playback.leave):
        with pytest.raises(AccessDeniedError) as refused:
            await call(command, cog, session.interaction(carol))
        assert "listening in <#100>" in refused.value.user_message
    session.player.stop.assert_not_awaited()
    session.player.skip.assert_not_called()
    bot.playback.leave.assert_not_awaited()


async def test_listeners_and_the_author_control_it_and_move_members_overrides(bot: Any) -> None:
    session = Session(bot)
    cog = Playback(bot)
    await call(Playback.skip, cog, session.interaction(session.alice))  # A listener.
    bob = human(2)  # Not listening, but it is his message.
    await call(Playback.skip, cog, session.interaction(bob))
    assert session.player.skip.call_count == 2
    mover = human(4)
    session.channel.permissions_for.return_value = discord.Permissions(move_members=True)
    await call(Playback.leave, cog, session.interaction(mover))
    bot.playback.leave.assert_awaited_once()


async def test_leave_answers_before_it_disconnects(bot: Any) -> None:
    session = Session(bot)
    interaction = session.interaction(session.alice)
    order: list[str] = []
    interaction.response.send_message.side_effect = lambda *a, **k: order.append("answered")
    bot.playback.leave.side_effect = lambda *a, **k: order.append("left")
    await call(Playback.leave, Playback(bot), interaction)
    assert order == ["answered", "left"]


async def test_queue_shows_who_and_how_long_never_the_text(bot: Any) -> None:
    session = Session(bot)
    interaction = session.interaction(human(3))
    await call(Playback.queue, Playback(bot), interaction)
    (line,) = interaction.response.send_message.await_args.args
    assert line == "▶️ bob · about 4 s\n1. alice · about 2 min"


async def test_join_from_another_channel_does_not_pull_the_bot_from_its_listeners(
    bot: Any,
) -> None:
    session = Session(bot)
    carol = human(3)
    elsewhere = create_autospec(discord.VoiceChannel, instance=True)
    carol.voice = create_autospec(discord.VoiceState, instance=True)
    carol.voice.channel = elsewhere
    interaction = session.interaction(carol)
    with pytest.raises(AccessDeniedError) as refused:
        await call(Playback.join, Playback(bot), interaction)
    assert "I'm speaking to 1 member in <#100>" in refused.value.user_message
    interaction.response.defer.assert_not_awaited()
    bot.playback.join.assert_not_awaited()
