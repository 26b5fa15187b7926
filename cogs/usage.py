"""`/usage me` and `/usage server`: what speech has cost, for members and for the owner."""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import SegmindError
from bot.locales import text
from bot.storage import UsageSummary
from bot.synthesis.usage import day_start, paid_calls
from bot.synthesis.usage_chart import CHART_DAYS, chart_days, days_text, draw_chart
from bot.tree import NO_MENTIONS, locale_of

if TYPE_CHECKING:
    from bot.app import TTSBot

__all__ = ["Usage", "setup", "summary_line"]

log = logging.getLogger(__name__)

CHART_FILE = "usage-30-days.png"


def summary_line(summary: UsageSummary, locale: str | None = None) -> str:
    cached = text("usage.cached", locale, count=summary.cached) if summary.cached else ""
    failed = text("usage.failed", locale, count=summary.failures) if summary.failures else ""
    key = "usage.requests_one" if summary.calls == 1 else "usage.requests_many"
    return text(
        "usage.summary",
        locale,
        requests=text(key, locale, count=summary.calls),
        cached=cached,
        failed=failed,
        minutes=summary.audio_minutes,
    )


@app_commands.guild_only()
class Usage(commands.GroupCog, group_name="usage"):
    """How much speech has been made."""

    def __init__(self, bot: TTSBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="me", description="Your own use of speech today")
    async def me(self, interaction: discord.Interaction[TTSBot]) -> None:
        assert interaction.guild_id is not None
        today = await self.bot.services.storage.usage(
            since=day_start(), guild_id=interaction.guild_id, user_id=interaction.user.id
        )
        locale = locale_of(interaction)
        lines = [text("usage.today", locale, summary=summary_line(today, locale))]
        guild = await self.bot.services.storage.get_guild(interaction.guild_id)
        if guild.daily_quota is not None:
            # Requests still being made count already, as they do when the member asks again.
            pending = self.bot.services.speech.quota.outstanding(
                interaction.guild_id, interaction.user.id
            )
            left = max(0, guild.daily_quota - paid_calls(today) - pending)
            lines.append(text("usage.left", locale, left=left, quota=guild.daily_quota))
        await interaction.response.send_message(
            "\n".join(lines), ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @app_commands.command(name="server", description="This server's speech use and its cost")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def server(self, interaction: discord.Interaction[TTSBot]) -> None:
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        since_today = day_start()
        today = await self.bot.services.storage.usage(
            since=since_today, guild_id=interaction.guild_id
        )
        month = await self.bot.services.storage.usage(
            since=since_today - timedelta(days=29), guild_id=interaction.guild_id
        )
        top = await self.bot.services.storage.top_users(interaction.guild_id, since_today, limit=5)
        days = chart_days(
            await self.bot.services.storage.daily_usage(
                interaction.guild_id, since_today - timedelta(days=CHART_DAYS - 1)
            ),
            since_today.date(),
        )
        locale = locale_of(interaction)
        embed = discord.Embed(title=text("usage.server_title", locale), colour=0x5865F2)
        for key, summary in (("usage.today_utc", today), ("usage.last_30", month)):
            calls = text("usage.api_calls", locale, calls=summary.api_calls, cost=summary.cost)
            embed.add_field(
                name=text(key, locale),
                value=f"{summary_line(summary, locale)}\n{calls}",
                inline=False,
            )
        if top:
            embed.add_field(
                name=text("usage.most_active", locale),
                value="\n".join(f"<@{user}>: {s.calls}" for user, s in top),
                inline=False,
            )
        # The chart's figures as text too: for screen readers, and if the image fails.
        embed.add_field(
            name=text("usage.per_day", locale), value=days_text(days, locale=locale), inline=False
        )
        embed.set_footer(text=await self._credits(locale))
        files = []
        try:
            chart = await asyncio.to_thread(draw_chart, days)
        except Exception:
            log.exception("Could not draw the usage chart; the figures are sent as text")
        else:
            alt = text("usage.chart_alt", locale)
            files.append(discord.File(io.BytesIO(chart), filename=CHART_FILE, description=alt))
            embed.set_image(url=f"attachment://{CHART_FILE}")
        await interaction.edit_original_response(
            embed=embed, attachments=files, allowed_mentions=NO_MENTIONS
        )

    async def _credits(self, locale: str | None) -> str:
        """The API key's balance: the last one an answer reported, else a free check."""
        remaining = self.bot.services.client.remaining_credits
        if remaining is None:
            try:
                remaining = (await self.bot.services.client.get_credits()).total
            except SegmindError as exc:
                log.info("Credits check failed: %s", exc)
                return text("usage.credits_unknown", locale)
        price = self.bot.settings.price_per_call
        calls = text("usage.about_calls", locale, count=remaining / price) if price > 0 else ""
        return text("usage.credits", locale, remaining=remaining, calls=calls)


async def setup(bot: TTSBot) -> None:
    await bot.add_cog(Usage(bot))
