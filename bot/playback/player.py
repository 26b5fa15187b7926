"""One player per server: a queue of utterances played one after another into a voice client.

An utterance yields its clips as they become ready, so a long text starts speaking when its
first chunk is synthesised while the rest are still being made.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import discord

from bot.errors import BotError, QueueFullError
from bot.playback.source import OggOpusSource

__all__ = ["GuildPlayer", "Utterance", "VoiceOutput", "single_clip"]

log = logging.getLogger(__name__)

_ids = itertools.count(1)


class VoiceOutput(Protocol):
    """What the player needs of `discord.VoiceClient` (and nothing more)."""

    def play(
        self,
        source: discord.AudioSource,
        *,
        after: Callable[[Exception | None], object] | None = None,
    ) -> None: ...

    def stop(self) -> None: ...

    def is_connected(self) -> bool: ...


@dataclass(eq=False)
class Utterance:
    """Something to say: a label for /queue and the Ogg Opus clips, in order, as they arrive."""

    label: str
    user_id: int
    clips: AsyncIterator[bytes]
    #: Withdraws synthesis already queued for this utterance (it may not have started playing).
    on_close: Callable[[], object] | None = None
    id: int = field(default_factory=lambda: next(_ids))
    skipped: bool = False

    async def close(self) -> None:
        """Stop making clips nobody will hear (cancels synthesis still under way)."""
        if self.on_close is not None:
            callback, self.on_close = self.on_close, None
            callback()
        closer = getattr(self.clips, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()


def single_clip(label: str, user_id: int, clip: bytes) -> Utterance:
    async def one() -> AsyncIterator[bytes]:
        yield clip

    return Utterance(label=label, user_id=user_id, clips=one())


class GuildPlayer:
    """A server's spoken queue: one message at a time, each streamed clip by clip as its
    chunks are made, with skip and stop that also withdraw the calls nobody will hear."""

    def __init__(
        self,
        guild_id: int,
        voice: VoiceOutput,
        *,
        idle_timeout: float = 300.0,
        max_queue: int = 50,
        on_idle: Callable[[GuildPlayer], Awaitable[None]] | None = None,
        on_error: Callable[[Utterance, BotError], Awaitable[None]] | None = None,
    ) -> None:
        self.guild_id = guild_id
        self.voice = voice
        self.idle_timeout = idle_timeout
        self.max_queue = max_queue
        self._on_idle = on_idle
        self._on_error = on_error
        self._queue: deque[Utterance] = deque()
        self._wakeup = asyncio.Event()
        self.current: Utterance | None = None
        self.played = 0
        self._task: asyncio.Task[None] | None = asyncio.create_task(
            self._run(), name=f"player-{guild_id}"
        )

    @property
    def queue(self) -> list[Utterance]:
        return list(self._queue)

    @property
    def closed(self) -> bool:
        return self._task is None or self._task.done()

    def enqueue(self, utterance: Utterance) -> int:
        """Add to the end; returns its place (1 = plays next or now)."""
        if len(self._queue) >= self.max_queue:
            raise QueueFullError(per_user=False, limit=self.max_queue)
        self._queue.append(utterance)
        self._wakeup.set()
        return len(self._queue) + (1 if self.current else 0)

    def skip(self) -> bool:
        """Stop the current utterance (all of its chunks); the queue goes on."""
        current = self.current
        if current is None:
            return False
        current.skipped = True
        self.voice.stop()
        return True

    async def stop(self) -> int:
        """Clear the queue and stop what is playing; returns how many were dropped."""
        dropped = list(self._queue)
        self._queue.clear()
        for utterance in dropped:
            await utterance.close()
        self.skip()
        return len(dropped)

    async def close(self) -> None:
        """Stop everything and end the loop; the voice connection is the caller's to close."""
        await self.stop()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            while True:
                if not self._queue:
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), self.idle_timeout)
                    except TimeoutError:
                        log.info("Guild %s idle for %.0f s", self.guild_id, self.idle_timeout)
                        if self._on_idle is not None:
                            await self._on_idle(self)
                        return
                    continue
                utterance = self._queue.popleft()
                self.current = utterance
                try:
                    await self._say(utterance)
                finally:
                    self.current = None
                    await utterance.close()
                if not self.voice.is_connected():
                    log.info("Guild %s: voice connection gone; player stops", self.guild_id)
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Player for guild %s crashed", self.guild_id)

    async def _say(self, utterance: Utterance) -> None:
        try:
            async for clip in utterance.clips:
                if self._interrupted(utterance):
                    return
                await self._play(OggOpusSource(clip))
                if self._interrupted(utterance):  # Don't make the next chunk for nobody.
                    return
            self.played += 1
        except BotError as exc:
            log.info("Guild %s: utterance %s failed: %s", self.guild_id, utterance.id, exc)
            if self._on_error is not None:
                await self._on_error(utterance, exc)

    def _interrupted(self, utterance: Utterance) -> bool:
        return utterance.skipped or not self.voice.is_connected()

    async def _play(self, source: OggOpusSource) -> None:
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[Exception | None] = loop.create_future()

        def after(error: Exception | None) -> None:
            # Called from discord.py's player thread.
            loop.call_soon_threadsafe(_settle, finished, error)

        try:
            self.voice.play(source, after=after)
        except discord.ClientException as exc:  # Disconnected in between: nothing to play into.
            log.info("Guild %s: cannot play: %s", self.guild_id, exc)
            return
        error = await finished
        if error is not None:
            log.warning("Guild %s: playback error: %s", self.guild_id, error)


def _settle(future: asyncio.Future[Exception | None], error: Exception | None) -> None:
    if not future.done():
        future.set_result(error)
