"""Settings, quotas, usage and privacy through the whole bot: real interactions, real SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aioresponses import aioresponses

from bot.app import create_bot
from bot.config import Settings
from bot.speech.access import Caller
from tests import discord_fakes as df
from tests import fake_segmind as fs
from tests.conftest import TEST_API_KEY
from tests.wiring.harness import DISCORD_TOKEN, Wired

ALICE = 910000000000000001
BOB = 910000000000000002


@pytest.fixture
async def started(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[Callable[[], Any]]:
    """Start (and restart) real bots that share one data directory and one fake Segmind."""
    async with fs.FakeSegmind(api_key=TEST_API_KEY) as segmind:
        settings = make_settings(
            discord_token=DISCORD_TOKEN, segmind_base_url=segmind.base_url, user_cooldown=0
        )
        with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
            discord = df.FakeDiscord(mocked)
            bots: list[Any] = []

            async def start() -> Wired:
                bot = create_bot(settings)
                await bot.login(DISCORD_TOKEN)
                bots.append(bot)
                return Wired(bot, discord, segmind)

            yield start
            for bot in bots:
                await bot.close()


def content(call: df.RestCall) -> str:
    assert call.json is not None
    data = call.json.get("data", call.json)
    text = data.get("content") or ""
    for embed in data.get("embeds") or []:
        text += " " + (embed.get("description") or "")
        text += " " + " ".join(f"{f['name']}: {f['value']}" for f in embed.get("fields", []))
        text += " " + (embed.get("footer") or {}).get("text", "")
    return str(text)


async def test_a_members_voice_survives_a_restart_and_is_used(started: Any) -> None:
    first = await started()
    (reply,) = await first.invoke(
        df.slash_command("voice", subcommand="set", user_id=ALICE, voice="sulafat")
    )
    assert "Sulafat — Warm" in content(reply)
    await first.bot.close()

    second = await started()  # A new bot, a new database connection, the same file.
    (shown,) = await second.invoke(df.slash_command("voice", subcommand="show", user_id=ALICE))
    assert "Sulafat — Warm" in content(shown)
    await second.invoke(df.slash_command("speak", user_id=ALICE, text="It is me."))
    assert second.segmind.requests[-1].json_body == {
        "text": "It is me.",
        "voice_1": "Sulafat",
        "temperature": 0.4,
    }


async def test_server_settings_refuse_non_managers(started: Any) -> None:
    wired = await started()
    (refused,) = await wired.invoke(
        df.slash_command(
            "settings",
            subcommand="limits",
            user_id=BOB,
            permissions=df.MEMBER_PERMISSIONS,
            daily_quota=0,
        )
    )
    assert refused.json is not None
    assert refused.json["data"]["flags"] & df.EPHEMERAL
    assert "Manage Guild permission" in content(refused)
    assert (await wired.bot.services.storage.get_guild(df.GUILD_ID)).daily_quota is None
    (shown,) = await wired.invoke(df.slash_command("settings", subcommand="show", user_id=ALICE))
    assert "Requests per member per day: unlimited" in content(shown)


async def test_daily_quota_refuses_without_calling_the_api(started: Any) -> None:
    wired = await started()
    await wired.invoke(
        df.slash_command("settings", subcommand="limits", user_id=ALICE, daily_quota=1)
    )
    await wired.invoke(
        df.slash_command("speak", user_id=BOB, permissions=df.MEMBER_PERMISSIONS, text="one")
    )
    (refused,) = await wired.invoke(
        df.slash_command("speak", user_id=BOB, permissions=df.MEMBER_PERMISSIONS, text="two")
    )
    assert "used your 1 requests for today" in content(refused)
    assert wired.segmind.tts_calls == 1
    (mine,) = await wired.invoke(
        df.slash_command("usage", subcommand="me", user_id=BOB, permissions=df.MEMBER_PERMISSIONS)
    )
    assert "Today in this server: 1 request" in content(mine)
    assert "Left today: 0 of 1" in content(mine)


async def test_requests_still_being_made_count_in_what_is_left_today(started: Any) -> None:
    wired = await started()
    await wired.invoke(
        df.slash_command("settings", subcommand="limits", user_id=ALICE, daily_quota=2)
    )
    wired.segmind.latency = 1.0
    speech = wired.bot.services.speech
    stream = await speech.begin(Caller(BOB, df.GUILD_ID), "Still being made.")
    (mine,) = await wired.invoke(
        df.slash_command("usage", subcommand="me", user_id=BOB, permissions=df.MEMBER_PERMISSIONS)
    )
    assert "Left today: 1 of 2" in content(mine)
    stream.cancel()


async def test_every_api_call_is_counted_and_costed(started: Any) -> None:
    wired = await started()
    wired.segmind.enqueue(fs.status(502))
    await wired.invoke(df.slash_command("speak", user_id=ALICE, text="Counting calls."))
    await wired.bot.services.usage.drain()
    since = datetime.now(UTC) - timedelta(hours=1)
    summary = await wired.bot.services.storage.usage(
        since=since, guild_id=df.GUILD_ID, user_id=ALICE
    )
    assert (summary.calls, summary.failures) == (2, 1)  # The 502 and the retry that worked.
    assert summary.cost == pytest.approx(0.005)
    assert summary.audio_seconds == pytest.approx(
        wired.segmind.expected_duration("Counting calls."), abs=0.05
    )
    calls = await wired.invoke(df.slash_command("usage", subcommand="server", user_id=ALICE))
    report = content(calls[-1])
    assert "API calls: 2 · estimated cost $0.005" in report
    assert "Remaining credits on the API key: 99.995" in report


async def test_forget_me_deletes_settings_and_usage(started: Any) -> None:
    wired = await started()
    await wired.invoke(df.slash_command("voice", subcommand="set", user_id=ALICE, voice="Kore"))
    await wired.invoke(df.slash_command("speak", user_id=ALICE, text="Remember me?"))
    await wired.bot.services.usage.drain()
    (reply,) = await wired.invoke(df.slash_command("forget-me", user_id=ALICE))
    assert "deleted your settings and usage records (2 in all)" in content(reply)
    assert (await wired.bot.services.storage.get_member(ALICE)).voice is None
    since = datetime.now(UTC) - timedelta(hours=1)
    assert (await wired.bot.services.storage.usage(since=since, user_id=ALICE)).calls == 0


async def test_narration_settings_and_reset(started: Any) -> None:
    wired = await started()
    (saved,) = await wired.invoke(
        df.slash_command(
            "settings", subcommand="narration", user_id=ALICE, skip_prefix="!", emoji="drop"
        )
    )
    assert "Skip prefix: `!`" in content(saved)
    assert "Custom emoji: dropped" in content(saved)
    (reset,) = await wired.invoke(
        df.slash_command("settings", subcommand="reset", user_id=ALICE, setting="narration")
    )
    assert "Skip prefix: `;`" in content(reset)
    guild = await wired.bot.services.storage.get_guild(df.GUILD_ID)
    assert (guild.narration_skip_prefix, guild.narration_emoji) == (";", "name")


async def test_settings_that_clear_can_be_cleared_from_discord(started: Any) -> None:
    # Discord clients never send an empty string, so a word clears instead (issue 10, 9).
    wired = await started()
    await wired.invoke(df.slash_command("voice", subcommand="set", user_id=ALICE, style="calm"))
    assert (await wired.bot.services.storage.get_member(ALICE)).style == "calm"
    await wired.invoke(df.slash_command("voice", subcommand="set", user_id=ALICE, style="none"))
    assert (await wired.bot.services.storage.get_member(ALICE)).style is None
    (saved,) = await wired.invoke(
        df.slash_command("settings", subcommand="narration", user_id=ALICE, skip_prefix="None")
    )
    assert "Skip prefix: none" in content(saved)
    guild = await wired.bot.services.storage.get_guild(df.GUILD_ID)
    assert guild.narration_skip_prefix == ""


async def test_silent_messages_and_voice_channel_chat_are_server_settings(started: Any) -> None:
    wired = await started()
    (saved,) = await wired.invoke(
        df.slash_command("settings", subcommand="narration", user_id=ALICE, skip_silent=True)
    )
    assert "Skip @silent messages: yes" in content(saved)
    narration = next(c for c in wired.bot.tree.get_commands() if c.name == "settings")
    channel_option = next(
        option
        for option in narration.to_dict(wired.bot.tree)["options"]
        if option["name"] == "narration"
    )["options"][0]
    assert channel_option["name"] == "channel"
    assert {0, 2} <= set(channel_option["channel_types"])  # Text, and a voice channel's chat.


async def test_stale_narration_is_set_in_minutes_shown_in_words_and_reset(started: Any) -> None:
    wired = await started()
    (shown,) = await wired.invoke(df.slash_command("settings", subcommand="show", user_id=ALICE))
    assert "Waiting messages older than 5 min are skipped" in content(shown)

    (saved,) = await wired.invoke(
        df.slash_command("settings", subcommand="narration", user_id=ALICE, stale_after=10)
    )
    assert "Saved." in content(saved)
    assert "Waiting messages older than 10 min are skipped" in content(saved)
    assert (await wired.bot.services.storage.get_guild(df.GUILD_ID)).narration_stale_after == 600

    (never,) = await wired.invoke(
        df.slash_command("settings", subcommand="narration", user_id=ALICE, stale_after=0)
    )
    assert "Waiting messages are never skipped" in content(never)
    (shown,) = await wired.invoke(df.slash_command("settings", subcommand="show", user_id=ALICE))
    assert "never skipped" in content(shown)
    assert (await wired.bot.services.storage.get_guild(df.GUILD_ID)).narration_stale_after == 0

    (reset,) = await wired.invoke(
        df.slash_command("settings", subcommand="reset", user_id=ALICE, setting="narration")
    )
    assert "Waiting messages older than 5 min are skipped" in content(reset)
    assert (await wired.bot.services.storage.get_guild(df.GUILD_ID)).narration_stale_after == 300


async def test_stale_narration_option_is_whole_minutes_up_to_an_hour(started: Any) -> None:
    wired = await started()
    settings = next(c for c in wired.bot.tree.get_commands() if c.name == "settings")
    narration = next(
        option
        for option in settings.to_dict(wired.bot.tree)["options"]
        if option["name"] == "narration"
    )
    option = next(o for o in narration["options"] if o["name"] == "stale_after")
    assert (option["type"], option["min_value"], option["max_value"]) == (4, 0, 60)  # INTEGER
    assert option["required"] is False
    # Discord enforces the range; past it (an old client, a raw request) the storage refuses.
    (refused,) = await wired.invoke(
        df.slash_command("settings", subcommand="narration", user_id=ALICE, stale_after=61)
    )
    assert "from 60 to 3,600 (1 to 60 minutes)" in content(refused)
    assert (await wired.bot.services.storage.get_guild(df.GUILD_ID)).narration_stale_after == 300
