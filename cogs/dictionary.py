"""A server's own pronunciations: `/dictionary add|remove|list`. Manage Server only.

Stored with the server's settings (so `/settings reset everything` and a server's removal take
it with them) and applied on the one way in, so narration, /speak and "Speak this message"
all read the words as the server says them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import InvalidRequestError
from bot.locales import line, message_of, text
from bot.speech.pronunciations import (
    MAX_ENTRIES,
    MAX_ENTRY_LENGTH,
    check_entry,
    normalize_word,
)
from bot.tree import NO_MENTIONS, locale_of
from cogs._shared import say

if TYPE_CHECKING:
    from bot.app import TTSBot

__all__ = ["Dictionary", "dictionary_lines", "setup"]

#: Room in one embed's description, with space kept for "… and N more".
_DESCRIPTION_ROOM = 4000


def dictionary_lines(pairs: tuple[tuple[str, str], ...], locale: str | None = None) -> str:
    """The entries as "word → say as" lines, as many as fit one embed."""
    if not pairs:
        return text("dictionary.empty", locale)
    lines: list[str] = []
    used = 0
    for count, (word, say_as) in enumerate(pairs):
        line = f"{discord.utils.escape_markdown(word)} → {discord.utils.escape_markdown(say_as)}"
        if used + len(line) + 1 > _DESCRIPTION_ROOM:
            lines.append(text("dictionary.more", locale, count=len(pairs) - count))
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Dictionary(commands.GroupCog, group_name="dictionary"):
    """How this server's words are said (Manage Server)."""

    def __init__(self, bot: TTSBot) -> None:
        self.bot = bot
        # A change reads the list and writes it back: one change per server at a time.
        self._locks: dict[int, asyncio.Lock] = {}
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        """Checked here too: admins can let anyone see a command, not let them change this."""
        if not interaction.permissions.manage_guild:
            raise app_commands.MissingPermissions(["manage_guild"])
        return True

    async def _reply(self, interaction: discord.Interaction[TTSBot], text: str) -> None:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    async def _save(self, guild_id: int, pairs: list[tuple[str, str]]) -> None:
        try:
            await self.bot.services.storage.update_guild(guild_id, pronunciations=pairs)
        except ValueError as exc:
            raise InvalidRequestError(message_of(exc)) from None

    @app_commands.command(name="add", description="Say a word your server's way")
    @app_commands.describe(
        word="The word as written, e.g. Nguyen (any case)",
        say_as="How to say it, e.g. Nwin",
    )
    async def add(
        self,
        interaction: discord.Interaction[TTSBot],
        word: app_commands.Range[str, 1, MAX_ENTRY_LENGTH],
        say_as: app_commands.Range[str, 1, MAX_ENTRY_LENGTH],
    ) -> None:
        assert interaction.guild_id is not None
        word, say_as = check_entry(word, say_as)
        key = normalize_word(word)
        async with self._locks.setdefault(interaction.guild_id, asyncio.Lock()):
            guild = await self.bot.services.storage.get_guild(interaction.guild_id)
            pairs = [pair for pair in guild.pronunciations if normalize_word(pair[0]) != key]
            if len(pairs) >= MAX_ENTRIES:
                raise InvalidRequestError(line("dictionary.full", limit=MAX_ENTRIES))
            await self._save(interaction.guild_id, [*pairs, (word, say_as)])
        await self._reply(
            interaction, say(interaction, "dictionary.saved", word=word, say_as=say_as)
        )

    @app_commands.command(name="remove", description="Forget how a word is said")
    @app_commands.describe(word="The word to forget (any case)")
    async def remove(
        self,
        interaction: discord.Interaction[TTSBot],
        word: app_commands.Range[str, 1, MAX_ENTRY_LENGTH],
    ) -> None:
        assert interaction.guild_id is not None
        key = normalize_word(word)
        async with self._locks.setdefault(interaction.guild_id, asyncio.Lock()):
            guild = await self.bot.services.storage.get_guild(interaction.guild_id)
            pairs = [pair for pair in guild.pronunciations if normalize_word(pair[0]) != key]
            if len(pairs) == len(guild.pronunciations):
                raise InvalidRequestError(line("dictionary.not_found", word=word.strip()))
            await self._save(interaction.guild_id, pairs)
        await self._reply(interaction, say(interaction, "dictionary.removed", word=word.strip()))

    @app_commands.command(name="list", description="See how this server's words are said")
    async def list_entries(self, interaction: discord.Interaction[TTSBot]) -> None:
        assert interaction.guild_id is not None
        guild = await self.bot.services.storage.get_guild(interaction.guild_id)
        embed = discord.Embed(
            title=say(
                interaction, "dictionary.title", count=len(guild.pronunciations), limit=MAX_ENTRIES
            ),
            description=dictionary_lines(guild.pronunciations, locale_of(interaction)),
            colour=0x5865F2,
        )
        await interaction.response.send_message(
            embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS
        )


async def setup(bot: TTSBot) -> None:
    await bot.add_cog(Dictionary(bot))
