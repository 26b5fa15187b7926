"""Shared test helpers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest.mock import create_autospec

from tests.fake_segmind import FakeSegmind


@contextlib.contextmanager
def fake_segmind_in_thread(**kwargs: Any) -> Iterator[FakeSegmind]:
    """Run the fake server on its own loop, for code under test that calls `asyncio.run`.

    Configure it (enqueue faults, set credits) only while the code under test is not running.
    """
    loop = asyncio.new_event_loop()
    fake = FakeSegmind(**kwargs)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(fake.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="fake-segmind", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the fake Segmind server did not start")
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def mock_interaction(user_id: int = 1, *, done: bool = False) -> Any:
    """An Interaction spec'd from discord.py's own class, so a misspelt method fails the test."""
    import discord

    interaction = create_autospec(discord.Interaction, instance=True)
    interaction.response = create_autospec(discord.InteractionResponse, instance=True)
    interaction.response.is_done.return_value = done
    interaction.user = create_autospec(discord.Member, instance=True)
    interaction.user.id = user_id
    interaction.user.roles = []
    interaction.user.guild_permissions = discord.Permissions.none()
    interaction.guild_id = 42
    interaction.created_at = datetime.now(UTC)
    interaction.command = None
    return interaction


def mock_bot(settings: Any) -> Any:
    """The bot spec'd from TTSBot, with spec'd services (pipeline, scheduler, client)."""
    from bot.app import TTSBot
    from bot.playback.connections import VoiceManager
    from bot.services import Services
    from bot.synthesis.client import SegmindClient
    from bot.synthesis.scheduler import Scheduler
    from bot.synthesis.service import SpeechService
    from bot.synthesis.stream import SpeechSource

    bot = create_autospec(TTSBot, instance=True)
    bot.settings = settings
    services = create_autospec(Services, instance=True)
    services.settings = settings
    services.speech = create_autospec(SpeechService, instance=True)
    services.scheduler = create_autospec(Scheduler, instance=True)
    # What /speak asks before deferring: the scheduler's refusal, as each test sets it (the
    # cluster's part is proven with a real Redis, in tests/synthesis/cluster).
    services.speech.source = create_autospec(SpeechSource, instance=True)
    services.speech.source.scheduler = services.scheduler
    services.speech.source.turns = None
    services.speech.source.refusal.side_effect = lambda requester: services.scheduler.refusal(
        requester
    )
    services.client = create_autospec(SegmindClient, instance=True)
    bot.services = services
    bot.playback = create_autospec(VoiceManager, instance=True)
    bot.playback.audience_on.return_value = False  # Not a Stage's audience unless told.
    bot.responding.return_value = contextlib.nullcontext()
    return bot


def make_member(user_id: int = 1, **overrides: Any) -> Any:
    """A server member spec'd from discord.Member: a human with no roles and no permissions
    unless `overrides` say otherwise (any attribute: `display_name`, `roles`, `voice`…)."""
    import discord

    member = create_autospec(discord.Member, instance=True)
    member.id, member.bot, member.display_name = user_id, False, f"Member {user_id}"
    member.roles, member.guild_permissions = [], discord.Permissions.none()
    member.voice = None
    for name, value in overrides.items():
        setattr(member, name, value)
    return member


def make_message(content: str = "", **overrides: Any) -> Any:
    """A plain member's message spec'd from discord.Message: default type, no mentions,
    attachments, stickers or reply, unless `overrides` say otherwise (any attribute)."""
    import discord

    message = create_autospec(discord.Message, instance=True)
    message.id, message.content, message.webhook_id = 1, content, None
    message.type = discord.MessageType.default
    message.flags = discord.MessageFlags()
    message.author = make_member()
    message.mentions, message.role_mentions, message.channel_mentions = [], [], []
    message.attachments, message.stickers, message.reference = [], [], None
    message.jump_url = "https://discord.com/channels/1/2/3"
    for name, value in overrides.items():
        setattr(message, name, value)
    return message
