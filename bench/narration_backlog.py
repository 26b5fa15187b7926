"""Whether narration keeps up on a free key: 3 members write 30 messages a minute to a key
that allows 5 calls a minute, with merging off, one member's messages merged (the bot's
default), and two members' merged into two-speaker calls (a server setting, off by default).

The real narration cog, the real pipeline (`SpeechService`, `Scheduler`, `SegmindClient`) and
the fake Segmind server, which enforces the 5-a-minute limit with its own sliding window; only
Discord is stood in for (messages, members, and a player that takes each utterance in order
as soon as its audio is ready). Time is scaled: a "minute" is `--minute` real seconds, and the
server takes 18 scaled seconds per call, as Gemini does. The fake runs in a process of its own
(`bench.scheduler_server`): making its audio is pure Python, and in the bot's process it would
hold the GIL the bot needs, and so late merges at fast scales, for reasons that are the
bench's; the calls are counted where they are made, by the fake (`/bench-stats`).

Members write the way people chat: in runs of 1 to 5 messages in a row (3 on average), the
next run by another member. Each message's backlog delay runs from when it was written to when
the player has its audio; a message never heard is dropped. The scheduler runs with the
bot's defaults (narration is not refused by a member's cap on calls waiting, since its
messages cannot all merge; `--per-member` caps how many calls a member's /speak may have
waiting, which narration ignores).

    python -m bench.narration_backlog [--minutes M] [--minute S] [--seed N]

Target: with merging on, at least 3 messages per call, a p95 backlog delay at most half of
merging off's, and nothing dropped. Runs average 3 messages, so merging one member's
messages alone cannot reach 3 per call (a run's first message is often already being made
when the next arrives); the target is checked on the two-speaker mode, and both are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import aiohttp
import discord

from bench.scheduler_server import KEY, ServerProcess, percentile
from bot.config import load_settings
from bot.playback.player import Utterance
from bot.storage import SQLiteStorage
from bot.synthesis.client import SegmindClient
from bot.synthesis.scheduler import Scheduler, SchedulerConfig
from bot.synthesis.service import SpeechService
from cogs.narration import Narration
from tests.helpers import mock_bot

GUILD, TEXT = 10, 20
MEMBERS = (1001, 1002, 1003)
NAMES = {1001: "Alice", 1002: "Bob", 1003: "Carol"}
CALLS_PER_MINUTE = 5
MESSAGES_PER_MINUTE = 30
#: Gemini's time per call, in (scaled) seconds.
CALL_SECONDS = 18.0
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "we",
    "wait",
    "for",
    "the",
    "next",
    "game",
]


#: The modes compared: (name, merge one member's messages, merge two members', the server's
#: bound in (scaled) seconds past which waiting messages are skipped, 0 for never).
MODES = (
    ("off", False, False, 0),
    ("one member", True, False, 0),
    ("two speakers", True, True, 0),
    ("off, skip after 5 min", False, False, 300),
    ("one member, skip after 5 min", True, False, 300),
)


@dataclass(frozen=True, slots=True)
class Result:
    mode: str
    written: int
    heard: int
    calls: int
    per_call: float
    p50: float
    p95: float
    #: Messages skipped as stale (the channel is told in one line each time).
    skipped: int = 0


class Player:
    """The player's queue as narration uses it; takes each utterance in order as soon as
    its audio is ready, and records when each message was heard."""

    #: Never in a Stage's audience: calls are queued as messages come.
    held = False

    def __init__(self, cog: Narration, heard: dict[int, float]) -> None:
        self.cog = cog
        self.heard = heard
        self.queue: list[Utterance] = []
        #: Messages withdrawn before their turn (stale: nothing else withdraws here).
        self.skipped = 0
        self.current: Utterance | None = None
        self._wakeup = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    def enqueue(self, utterance: Utterance) -> int:
        self.queue.append(utterance)
        self._wakeup.set()
        return len(self.queue)

    def find(self, source_id: int) -> Utterance | None:
        return next((u for u in self.queue if u.source_id == source_id), None)

    async def replace(self, old: Utterance, new: Utterance) -> bool:
        if old not in self.queue:
            return False
        self.queue[self.queue.index(old)] = new
        await old.close()
        return True

    async def withdraw(self, utterance: Utterance) -> bool:
        if utterance not in self.queue:
            return False
        self.queue.remove(utterance)
        room = self.cog.reader.rooms.find(GUILD)
        waiting = room.waiting.get(utterance.source_id or 0) if room else None
        if waiting is not None and waiting.utterance is utterance:
            self.skipped += len(waiting.merged.parts)
        await utterance.close()
        return True

    async def _run(self) -> None:
        while True:
            while not self.queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            # Taken out of the queue as it starts, as the real player does: what is playing
            # (or awaiting its audio at the head) is no longer "waiting".
            utterance = self.queue.pop(0)
            self.current = utterance
            room = self.cog.reader.rooms.find(GUILD)
            waiting = room.waiting.get(utterance.source_id or 0) if room else None
            parts = list(waiting.merged.message_ids) if waiting else [utterance.source_id]
            try:
                async for _ in utterance.clips:
                    pass
            except Exception:  # A failed call: its messages are not heard.
                parts = []
            now = time.monotonic()
            for part in parts:
                if part is not None:
                    self.heard.setdefault(part, now)
            self.current = None
            await utterance.close()
            await utterance.close()


def discord_world() -> tuple[Any, Any, Callable[[int, int, str], Any]]:
    """A guild, its voice channel, and a way to write a message there."""
    guild = create_autospec(discord.Guild, instance=True)
    guild.id = GUILD
    voice = create_autospec(discord.VoiceChannel, instance=True)
    voice.id, voice.members, voice.user_limit = 30, [], 0
    text = create_autospec(discord.TextChannel, instance=True)
    text.id = TEXT
    members: dict[int, Any] = {}
    for user_id in MEMBERS:
        member = create_autospec(discord.Member, instance=True)
        member.id, member.bot, member.display_name = user_id, False, NAMES[user_id]
        member.voice = create_autospec(discord.VoiceState, instance=True)
        member.voice.channel = voice
        member.roles, member.guild_permissions = [], discord.Permissions.none()
        members[user_id] = member
    guild.get_member.side_effect = members.get

    def message(message_id: int, author: int, content: str) -> Any:
        msg = create_autospec(discord.Message, instance=True)
        msg.guild, msg.webhook_id, msg.id = guild, None, message_id
        msg.type = discord.MessageType.default
        msg.flags = discord.MessageFlags()
        msg.content, msg.channel, msg.author = content, text, members[author]
        msg.mentions, msg.role_mentions, msg.channel_mentions = [], [], []
        msg.attachments, msg.stickers, msg.reference = [], [], None
        return msg

    return guild, voice, message


def script(count: int, seed: int) -> list[tuple[int, str]]:
    """Who writes each message: runs of 1 to 5 by one member, the next run by another."""
    rng = random.Random(seed)
    lines: list[tuple[int, str]] = []
    author = rng.choice(MEMBERS)
    while len(lines) < count:
        for _ in range(rng.randint(1, 5)):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9)))
            lines.append((author, f"Message {len(lines)}: {words}."))
        author = rng.choice([m for m in MEMBERS if m != author])
    return lines[:count]


async def run(
    args: argparse.Namespace, mode: str, merging: bool, speakers: bool, stale: int
) -> Result:
    minute = args.minute
    latency = CALL_SECONDS / 60 * minute
    lines = script(int(MESSAGES_PER_MINUTE * args.minutes), args.seed)
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(
            env_file=None,
            segmind_api_key=KEY,
            data_dir=Path(folder),
            narration_merge=merging,
        )
        fake = ServerProcess(
            f"--rpm={CALLS_PER_MINUTE}", f"--window={minute}", f"--latency={latency}"
        )
        async with (
            fake,
            aiohttp.ClientSession() as session,
            SQLiteStorage(Path(folder) / "bot.db") as storage,
        ):
            client = SegmindClient(session, api_key=KEY, base_url=fake.base_url)
            config = SchedulerConfig(
                rpm=CALLS_PER_MINUTE,
                window=minute,
                initial_latency=latency,
                max_queue=1000,
                max_waiting_per_user=args.per_member,
            )
            scheduler = Scheduler(client.synthesize, config)
            scheduler.start()
            bot = mock_bot(settings)
            bot.services.storage = storage
            bot.services.speech = SpeechService(settings, scheduler, storage=storage)
            _, voice, message = discord_world()
            await storage.update_guild(
                GUILD,
                narration_channel_id=TEXT,
                narration_merge_speakers=speakers,
                narration_stale_after=stale,
            )
            cog = Narration(bot)
            # The reader's clock runs in scaled seconds, so the bound is in scaled time.
            loop = asyncio.get_running_loop()
            rate = 60 / minute
            cog.reader._clock = lambda: loop.time() * rate
            cog.reader.clock_rate = rate
            heard: dict[int, float] = {}
            player = Player(cog, heard)
            bot.playback.connected_channel.return_value = voice
            bot.playback.player.return_value = player
            written: dict[int, float] = {}
            gap = minute / MESSAGES_PER_MINUTE
            began = time.monotonic()
            for n, (author, content) in enumerate(lines):
                await asyncio.sleep(max(0.0, began + n * gap - time.monotonic()))
                written[n + 1] = time.monotonic()
                await cog.on_message(message(n + 1, author, content))
            # Wait until everything still queued is heard (or nothing moves for 3 minutes).
            last, progress = time.monotonic(), len(heard)
            while (player.queue or player.current) and time.monotonic() - last < 3 * minute:
                await asyncio.sleep(0.05)
                if len(heard) != progress:
                    last, progress = time.monotonic(), len(heard)
            player.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await player.task
            await cog.reader.close()
            await scheduler.close(grace=0)
            calls = await calls_made(session, fake.base_url)
    delays = [(heard[m] - written[m]) / minute * 60 for m in written if m in heard]
    return Result(
        mode=mode,
        written=len(written),
        heard=len(delays),
        calls=calls,
        per_call=len(delays) / calls if calls else 0.0,
        p50=percentile(delays, 0.50) if delays else float("nan"),
        p95=percentile(delays, 0.95) if delays else float("nan"),
        skipped=player.skipped,
    )


async def calls_made(session: aiohttp.ClientSession, base_url: str) -> int:
    """The calls the fake received (answered or refused), as it counted them."""
    async with session.get(f"{base_url}/bench-stats") as response:
        response.raise_for_status()
        return int((await response.json())["calls"])


def report(result: Result) -> None:
    mode = result.mode
    print(f"merging {mode}: messages written: {result.written}")
    print(f"merging {mode}: calls made: {result.calls}")
    print(f"merging {mode}: messages per call: {result.per_call:.2f}")
    print(f"merging {mode}: backlog delay p50: {result.p50:.1f} s (scaled)")
    print(f"merging {mode}: backlog delay p95: {result.p95:.1f} s (scaled)")
    print(f"merging {mode}: skipped as stale: {result.skipped}")
    print(f"merging {mode}: dropped messages: {result.written - result.heard - result.skipped}")


async def main_async(args: argparse.Namespace) -> bool:
    results = []
    for mode, merging, speakers, stale in MODES:
        results.append(await run(args, mode, merging, speakers, stale))
        report(results[-1])
    off, two = results[0], results[2]
    for result in results[1:]:
        print(
            f"merging {result.mode}: p95 vs off: {result.p95 / off.p95:.0%}, "
            f"messages per call vs off: {result.per_call / off.per_call:.1f}x"
        )
    met = two.per_call >= 3 and two.p95 <= off.p95 / 2 and two.written == two.heard
    print(f"targets met: {'yes' if met else 'NO'}")
    return met


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.narration_backlog", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=2.0, help="minutes of writing")
    parser.add_argument("--minute", type=float, default=3.0, help="real seconds per minute")
    parser.add_argument("--seed", type=int, default=13, help="who writes when")
    parser.add_argument(
        "--per-member",
        type=int,
        default=3,
        help="calls one member's /speak may have waiting (narration is not capped per member)",
    )
    args = parser.parse_args(argv)
    if not asyncio.run(main_async(args)):
        sys.exit(1)


if __name__ == "__main__":
    main()
