"""`/voice name` through spec'd Discord objects and a real SQLite storage: who may set or
clear how narration announces a member (the nickname rule)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from unittest.mock import create_autospec

import discord
import pytest

from bot.config import Settings
from bot.errors import AccessDeniedError
from bot.storage import SQLiteStorage
from cogs.voice import VoiceSettings
from tests.helpers import mock_bot, mock_interaction

ALICE, BOB = 1001, 1002
#: An ordinary member of a server that lets members change their own nickname.
RENAMES = discord.Permissions(change_nickname=True)


@pytest.fixture
async def storage(tmp_path: Any) -> AsyncIterator[SQLiteStorage]:
    store = SQLiteStorage(tmp_path / "bot.db")
    await store.connect()
    yield store
    await store.close()


@pytest.fixture
def cog(make_settings: Callable[..., Settings], storage: SQLiteStorage) -> VoiceSettings:
    bot = mock_bot(make_settings())
    bot.services.storage = storage
    return VoiceSettings(bot)


def asking(permissions: discord.Permissions, *, user_id: int = ALICE) -> Any:
    """An interaction from a member with these permissions where they run the command."""
    interaction = mock_interaction(user_id)
    interaction.permissions = permissions
    return interaction


def member(user_id: int) -> Any:
    picked = create_autospec(discord.Member, instance=True)
    picked.id = user_id
    picked.mention = f"<@{user_id}>"
    return picked


async def run_name(cog: VoiceSettings, interaction: Any, said_as: str, who: Any = None) -> None:
    """Call /voice name's body as the tree would; `member` only when the member picked one."""
    callback: Any = VoiceSettings.name.callback
    picked = {} if who is None else {"member": who}
    await callback(cog, interaction, said_as, **picked)


def reply_of(interaction: Any) -> str:
    interaction.response.send_message.assert_awaited_once()
    call = interaction.response.send_message.await_args
    assert call.kwargs["ephemeral"] is True
    return str(call.args[0])


async def spoken_name(storage: SQLiteStorage, user_id: int) -> str | None:
    return (await storage.get_member(user_id)).spoken_name


async def test_a_member_who_may_change_their_nickname_sets_their_spoken_name(
    cog: VoiceSettings, storage: SQLiteStorage
) -> None:
    interaction = asking(RENAMES)
    await run_name(cog, interaction, "Nwin")
    assert "“Nwin”" in reply_of(interaction)
    assert await spoken_name(storage, ALICE) == "Nwin"


async def test_without_change_nickname_a_spoken_name_is_refused_and_nothing_is_stored(
    cog: VoiceSettings, storage: SQLiteStorage
) -> None:
    interaction = asking(discord.Permissions(send_messages=True, manage_nicknames=True))
    with pytest.raises(AccessDeniedError) as refused:
        await run_name(cog, interaction, "Bob")
    assert "Change Nickname" in refused.value.user_message
    interaction.response.send_message.assert_not_awaited()
    assert await storage.forget_member(ALICE) == 0  # Not even an empty row was written.


async def test_a_spoken_name_cannot_be_set_from_a_dm(
    cog: VoiceSettings, storage: SQLiteStorage
) -> None:
    interaction = asking(discord.Permissions.none())
    interaction.guild_id = None
    with pytest.raises(AccessDeniedError, match="from a server"):
        await run_name(cog, interaction, "Bob")
    assert await spoken_name(storage, ALICE) is None


async def test_clearing_ones_own_spoken_name_needs_no_permission(
    cog: VoiceSettings, storage: SQLiteStorage
) -> None:
    await storage.update_member(ALICE, spoken_name="Nwin")
    interaction = asking(discord.Permissions.none())
    await run_name(cog, interaction, "clear", member(ALICE))
    assert "your display name" in reply_of(interaction)
    assert await spoken_name(storage, ALICE) is None


async def test_a_manager_clears_another_members_spoken_name(
    cog: VoiceSettings, storage: SQLiteStorage
) -> None:
    await storage.update_member(BOB, spoken_name="Alice")
    await storage.update_member(ALICE, spoken_name="Ah-lee-sah")
    interaction = asking(discord.Permissions(manage_nicknames=True))
    await run_name(cog, interaction, "clear", member(BOB))
    reply = reply_of(interaction)
    assert "Cleared <@1002>'s spoken name" in reply
    assert "“Alice”" in reply
    assert await spoken_name(storage, BOB) is None
    assert await spoken_name(storage, ALICE) == "Ah-lee-sah"  # The manager's own is kept.


async def test_clearing_a_member_with_no_spoken_name_stores_nothing_about_them(
    cog: VoiceSettings, storage: SQLiteStorage
) -> None:
    interaction = asking(discord.Permissions(manage_nicknames=True))
    await run_name(cog, interaction, "none", member(BOB))
    assert "has no spoken name" in reply_of(interaction)
    assert await storage.forget_member(BOB) == 0


async def test_without_manage_nicknames_another_members_name_is_not_cleared(
    cog: VoiceSettings, storage: SQLiteStorage
) -> None:
    await storage.update_member(BOB, spoken_name="Robert")
    interaction = asking(RENAMES)
    with pytest.raises(AccessDeniedError, match="Manage Nicknames"):
        await run_name(cog, interaction, "clear", member(BOB))
    interaction.response.send_message.assert_not_awaited()
    assert await spoken_name(storage, BOB) == "Robert"


async def test_even_a_manager_cannot_set_another_members_spoken_name(
    cog: VoiceSettings, storage: SQLiteStorage
) -> None:
    interaction = asking(discord.Permissions.all())
    with pytest.raises(AccessDeniedError, match="only clear"):
        await run_name(cog, interaction, "Robert", member(BOB))
    assert await spoken_name(storage, BOB) is None
    assert await spoken_name(storage, ALICE) is None


async def test_show_says_the_display_name_is_read_where_nicknames_are_locked(
    cog: VoiceSettings, storage: SQLiteStorage
) -> None:
    await storage.update_member(ALICE, spoken_name="Nwin")
    callback: Any = VoiceSettings.show.callback
    locked = asking(discord.Permissions(send_messages=True))
    await callback(cog, locked)
    assert "your display name in this server" in reply_of(locked)
    allowed = asking(RENAMES)
    await callback(cog, allowed)
    assert "says your name as: “Nwin”" in reply_of(allowed)
