"""Discord-to-core translations shared by the cogs (private: not an extension)."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.locales import render, text
from bot.playback.presence import caller_of
from bot.speech.cleanup import MessageFacts
from bot.speech.styles import search_styles
from bot.speech.voices import search as search_voices
from bot.tree import locale_of

__all__ = [
    "CLEAR_WORDS",
    "caller_of",
    "cleared",
    "facts_from_message",
    "localized",
    "say",
    "style_autocomplete",
    "voice_autocomplete",
]

#: Typed in a text option to clear a setting: Discord clients never submit an empty string,
#: so "empty text clears it" cannot be done from Discord.
CLEAR_WORDS = frozenset({"none", "off", "clear"})


def cleared(value: str | None) -> str | None:
    """ "" for a word that clears the setting, the value itself otherwise (None: not given)."""
    if value is not None and value.strip().casefold() in CLEAR_WORDS:
        return ""
    return value


def say(interaction: discord.Interaction[Any], key: str, /, **fields: object) -> str:
    """The catalogue's message `key` in the member's Discord language."""
    return text(key, locale_of(interaction), **fields)


def localized(interaction: discord.Interaction[Any], message: str) -> str:
    """A message from the core (a refusal, a warning) in the member's language where it is
    the catalogue's; anything else as it is."""
    return render(message, locale_of(interaction))


def facts_from_message(message: discord.Message) -> MessageFacts:
    """The Discord-free view of a message that the clean-up works on."""
    return MessageFacts(
        content=message.content,
        users={user.id: user.display_name for user in message.mentions},
        roles={role.id: role.name for role in message.role_mentions},
        channels={
            channel.id: getattr(channel, "name", "a channel")
            for channel in message.channel_mentions
        },
        attachments=[a.content_type or a.filename for a in message.attachments],
        stickers=[sticker.name for sticker in message.stickers],
        is_reply=message.reference is not None,
    )


async def voice_autocomplete(
    interaction: discord.Interaction[Any], current: str
) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=v.label, value=v.name) for v in search_voices(current)]


async def style_autocomplete(
    interaction: discord.Interaction[Any], current: str
) -> list[app_commands.Choice[str]]:
    choices = [app_commands.Choice(name=name, value=name) for name in search_styles(current)]
    typed = current.strip()[:100]
    if typed and typed.casefold() not in {c.value for c in choices}:
        choices.insert(0, app_commands.Choice(name=typed, value=typed))
    return choices[:25]
