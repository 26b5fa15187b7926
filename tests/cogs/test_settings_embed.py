"""What /settings show tells a server owner: the limits in force, not merely the ones stored."""

from __future__ import annotations

from bot.storage import GuildSettings
from cogs.server_settings import settings_embed


def limits_field(settings: GuildSettings, *, bot_text_limit: int) -> str:
    embed = settings_embed(settings, bot_text_limit=bot_text_limit, bot_cooldown=5.0)
    return next(str(field.value) for field in embed.fields if field.name == "Limits")


def test_a_server_limit_above_the_operators_shows_the_operators_as_in_force() -> None:
    shown = limits_field(GuildSettings(1, max_text_length=1000), bot_text_limit=300)
    assert "Longest /speak text: 300 characters" in shown
    assert "1,000 is above the bot's limit" in shown


def test_a_server_limit_below_the_operators_is_the_one_in_force() -> None:
    shown = limits_field(GuildSettings(1, max_text_length=120), bot_text_limit=300)
    assert "Longest /speak text: 120 characters\n" in shown


def test_without_a_server_limit_the_bots_default_is_shown() -> None:
    shown = limits_field(GuildSettings(1), bot_text_limit=300)
    assert "Longest /speak text: 300 characters (bot default)" in shown
