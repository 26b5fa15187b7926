"""The bot class: startup that survives a broken cog, minimal intents, explicit sync."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import types
from collections.abc import Callable
from typing import Any

import aiohttp
import discord
import pytest
from aioresponses import aioresponses

import cogs
from bot.app import (
    ShardedTTSBot,
    TTSBot,
    create_bot,
    extension_names,
    shutdown_plan,
    sync_commands,
)
from bot.config import Settings
from tests import discord_fakes as df

TOKEN = "discord-SECRET-token.xyz"


@pytest.fixture
def broken_cog(monkeypatch: pytest.MonkeyPatch) -> str:
    """A cog module whose setup raises, as a typo in a new cog would."""
    name = "cogs._test_broken"
    module = types.ModuleType(name)

    async def setup(bot: Any) -> None:
        raise RuntimeError("this cog is broken")

    module.setup = setup  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, name, module)
    real = extension_names()
    monkeypatch.setattr("bot.app.extension_names", lambda: [name, *real])
    return name


def test_every_public_cog_is_found() -> None:
    assert "cogs.speak" in extension_names()
    assert all(not name.split(".")[-1].startswith("_") for name in extension_names())
    assert cogs.__name__ == "cogs"


def test_intents_are_minimal(make_settings: Callable[..., Settings]) -> None:
    bot = create_bot(make_settings(narration_enabled=False))
    assert bot.intents == discord.Intents(guilds=True, voice_states=True)
    # Only narration asks for messages and their privileged content.
    bot = create_bot(make_settings())
    assert bot.intents == discord.Intents(
        guilds=True, voice_states=True, guild_messages=True, message_content=True
    )
    assert type(bot) is TTSBot
    assert isinstance(create_bot(make_settings(sharded=True)), ShardedTTSBot)


def test_the_wait_for_servers_at_login_is_the_operators(
    make_settings: Callable[..., Settings],
) -> None:
    assert create_bot(make_settings())._connection.guild_ready_timeout == 2.0
    quick = create_bot(make_settings(guild_ready_timeout=0.2))
    assert quick._connection.guild_ready_timeout == 0.2
    sharded = create_bot(make_settings(guild_ready_timeout=0.5, shard_count=2))
    assert sharded._connection.guild_ready_timeout == 0.5


def test_shards_split_across_processes(make_settings: Callable[..., Settings]) -> None:
    bot = create_bot(make_settings(shard_count=4, shard_ids="2,3"))
    assert isinstance(bot, ShardedTTSBot)
    assert bot.shard_count == 4
    assert bot.shard_ids == [2, 3]
    alone = create_bot(make_settings(shard_count=2))
    assert isinstance(alone, ShardedTTSBot)
    assert alone.shard_count == 2
    assert alone.shard_ids is None


async def test_a_broken_cog_is_logged_and_the_rest_load(
    make_settings: Callable[..., Settings],
    broken_cog: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = create_bot(make_settings(discord_token=TOKEN))
    with aioresponses() as mocked, caplog.at_level(logging.ERROR):
        df.FakeDiscord(mocked)
        await bot.login(TOKEN)
        try:
            assert broken_cog in bot.extension_errors
            assert "Speak" in bot.cogs
            assert bot.tree.get_command("speak") is not None
            assert any(broken_cog in r.getMessage() for r in caplog.records)
        finally:
            await bot.close()
    assert bot.services.session is not None
    assert bot.services.session.closed
    assert TOKEN not in caplog.text


async def _synced(
    make_settings: Callable[..., Settings], guild_id: int | None, **settings: Any
) -> tuple[list[str], list[tuple[str, str, Any]]]:
    calls: list[tuple[str, str, Any]] = []

    def record(url: Any, **kwargs: Any) -> Any:
        from aioresponses import CallbackResult

        body = json.loads(kwargs["data"])
        calls.append(("PUT", str(url), body))
        return CallbackResult(
            body=json.dumps(
                [
                    {
                        "id": str(df.snowflake()),
                        "application_id": str(df.APP_ID),
                        "name": c["name"],
                        "description": c.get("description", ""),
                        "type": c.get("type", 1),
                        "version": "1",
                        "options": c.get("options", []),
                        "default_member_permissions": None,
                        "dm_permission": True,
                        "nsfw": False,
                    }
                    for c in body
                ]
            ),
            content_type="application/json",
        )

    with aioresponses() as mocked:
        df.FakeDiscord(mocked)
        mocked.put(re.compile(r"https://discord.com/api/v10/applications/.*"), callback=record)
        names = await sync_commands(
            make_settings(discord_token=TOKEN, **settings), guild_id=guild_id
        )
    return names, calls


async def test_sync_to_one_guild(make_settings: Callable[..., Settings]) -> None:
    names, calls = await _synced(make_settings, guild_id=123)
    ((_, url, body),) = calls
    assert url.endswith(f"/applications/{df.APP_ID}/guilds/123/commands")
    assert {"speak", "Speak this message", "join", "leave", "skip", "stop", "queue"} <= set(names)
    speak = next(c for c in body if c["name"] == "speak")
    assert [o["name"] for o in speak["options"]] == [
        "text",
        "voice",
        "voice_2",
        "temperature",
        "style",
        "play",
        "fresh",
        "voice_message",
        "pace",
    ]
    temperature = speak["options"][3]
    assert (temperature["min_value"], temperature["max_value"]) == (0.0, 2.0)
    assert all(
        o.get("autocomplete")
        for o in speak["options"]
        if o["name"] in {"voice", "voice_2", "style"}
    )


async def test_sync_globally_and_no_sync_on_plain_start(
    make_settings: Callable[..., Settings],
) -> None:
    # A development guild set in the settings must not trigger a second sync during `sync`.
    names, calls = await _synced(make_settings, guild_id=None, dev_guild_id=555)
    ((_, url, _),) = calls
    assert url.endswith(f"/applications/{df.APP_ID}/commands")
    assert "speak" in names


async def test_refused_message_content_intent_restarts_without_narration(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bot import app as tts_bot

    attempts: list[bool] = []
    refuse_all = False

    async def run_once(settings: Settings, stop: object) -> None:
        attempts.append(settings.narration_enabled)
        if settings.narration_enabled or refuse_all:
            raise discord.PrivilegedIntentsRequired(None)

    monkeypatch.setattr(tts_bot, "_run_once", run_once)
    await tts_bot.run_bot(make_settings(discord_token=TOKEN))
    assert attempts == [True, False]
    assert "narration is off" in caplog.text
    # With narration already off, a refusal is another intent's problem: it is not retried.
    attempts.clear()
    refuse_all = True
    with pytest.raises(discord.PrivilegedIntentsRequired):
        await tts_bot.run_bot(make_settings(discord_token=TOKEN, narration_enabled=False))
    assert attempts == [False]


def test_services_are_refused_before_they_are_open(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(RuntimeError, match="not open yet"):
        _ = create_bot(make_settings()).services


@pytest.mark.parametrize(("total", "grace"), [(8, 5), (8, 30), (1, 10), (60, 20), (8, 0)])
def test_a_shutdown_plan_fits_its_budget(total: float, grace: float) -> None:
    plan = shutdown_plan(total, grace)
    assert 0 <= plan.intake_grace <= grace
    assert plan.intake_grace + plan.leave_reserve < total  # Time left to tell and leave.
    assert 0 < plan.close_reserve < plan.leave_reserve


def test_the_default_shutdown_fits_docker_stop(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    assert settings.shutdown_timeout <= 8
    assert shutdown_plan(settings.shutdown_timeout, settings.shutdown_grace).intake_grace > 0


async def test_a_learned_limit_is_told_to_the_operator_once(
    make_settings: Callable[..., Settings],
) -> None:
    from bot.services import Alerts, build_scheduler
    from bot.synthesis.client import SegmindClient

    bot = create_bot(make_settings(discord_token=TOKEN, segmind_rpm=50))
    told: list[str] = []

    async def alert(message: str) -> None:
        told.append(message)

    bot._alert = alert  # type: ignore[method-assign]
    bot._alert_limit_learned(5)
    await asyncio.gather(*bot._alerts)
    assert told == [
        "ℹ️ Your Segmind key accepts about 5 calls a minute, fewer than SEGMIND_RPM=50. The "
        "bot now paces itself at 5; set SEGMIND_RPM=5 to start there after a restart."
    ]
    # The services hand the hook to the scheduler that learns the limit.
    async with aiohttp.ClientSession() as session:
        client = SegmindClient.from_settings(session, bot.settings)
        scheduler = build_scheduler(
            bot.settings, client, alerts=Alerts(on_limit_learned=bot._alert_limit_learned)
        )
        try:
            assert scheduler._on_limit_learned == bot._alert_limit_learned
        finally:
            await scheduler.close(grace=0)


async def test_a_cluster_tells_the_operator_each_pause_and_resume_once(
    make_settings: Callable[..., Settings], redis_url: str
) -> None:
    """Every process halts when the account does: one of them tells the operator, and a
    pause after a resume is told again at once. Unexpected errors are told once too."""
    from bot.errors import AuthenticationError

    told: list[str] = []

    async def alert(message: str) -> None:
        told.append(message)

    bots = [create_bot(make_settings(discord_token=TOKEN, redis_url=redis_url)) for _ in range(2)]
    with aioresponses() as mocked:
        df.FakeDiscord(mocked)
        for bot in bots:
            bot._alert = alert  # type: ignore[method-assign]
            bot._error_alerts._send = alert
            await bot.login(TOKEN)
        try:
            for step in ("halt", "resume", "halt"):
                for bot in bots:
                    if step == "halt":
                        await bot._alert_halt(AuthenticationError("the key was refused"))
                    else:
                        await bot._alert_resume()
            assert [line.split()[3] for line in told] == ["paused", "resumed:", "paused"]
            for bot in bots:
                bot.report_unexpected("narration", "ref1", KeyError("x"))
                await asyncio.gather(*bot._error_alerts._tasks)
            assert len(told) == 4
        finally:
            for bot in bots:
                await bot.close()
