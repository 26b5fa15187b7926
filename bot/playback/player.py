"""One player per server: a queue of utterances played one after another into a voice client.

An utterance yields its clips as they become ready, so a long text starts speaking when its
first chunk is synthesised while the rest are still being made.

A voice connection re-handshakes now and then (a voice server change, a 4015 resume, the
bot's own move): for a network round trip or several, `is_connected()` is False although
the bot still sits in the channel. The player waits that out, for `reconnect_timeout`
seconds, instead of treating it as the end; only a connection that does not come back ends
the player, and then every message still queued is closed (its unpaid calls withdrawn) and
its member told, rather than left to be made and paid for nobody.
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

from bot.errors import BotError, NotConnectedError, QueueFullError
from bot.playback.source import OggOpusSource

__all__ = [
    "CONNECTION_LOST",
    "GuildPlayer",
    "Utterance",
    "VoiceOutput",
    "failure_line",
    "single_clip",
    "wait_until_connected",
]

log = logging.getLogger(__name__)

_ids = itertools.count(1)

#: What a member whose message was waiting hears when the connection is gone for good.
CONNECTION_LOST = (
    "I lost the voice connection and could not get it back, so your message was not played."
)
#: How often a waiting player looks whether the connection is back.
_RECONNECT_POLL = 0.05
#: `play` refused although connected (a race with a reconnect): tries before giving up a clip.
_PLAY_ATTEMPTS = 3


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
    """Something to say: who asked, the Ogg Opus clips in order as they arrive, and how to
    tell the member if it fails after it was queued."""

    #: Who is speaking, as /queue shows it (never the text: it may come from anywhere).
    label: str
    user_id: int
    clips: AsyncIterator[bytes]
    #: Withdraws synthesis already queued for this utterance (it may not have started playing).
    on_close: Callable[[], object] | None = None
    #: Tells the member a line about this message (a later chunk failed, the bot left…).
    notify: Callable[[str], Awaitable[object]] | None = None
    #: Estimated seconds of speech, for /queue; None when unknown.
    seconds: float | None = None
    #: The Discord message it reads (narration), so a delete or an edit can find it.
    source_id: int | None = None
    id: int = field(default_factory=lambda: next(_ids))
    skipped: bool = False
    #: The number of clips played so far.
    parts_played: int = 0

    async def close(self) -> None:
        """Stop making clips nobody will hear (cancels synthesis still under way)."""
        if self.on_close is not None:
            callback, self.on_close = self.on_close, None
            callback()
        closer = getattr(self.clips, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()

    async def report(self, line: str) -> None:
        """Tell the member, if there is a way to; a failure to tell is logged, not raised."""
        if self.notify is None:
            return
        try:
            await self.notify(line)
        except Exception as exc:
            log.info("Could not tell user %s about utterance %s: %s", self.user_id, self.id, exc)


def failure_line(error: BotError, parts_played: int) -> str:
    """The member's line for a message that failed in voice; after its first part played,
    say which part, so the sudden silence is explained."""
    if parts_played == 0:
        return f"⚠️ {error.user_message}"
    return f"⚠️ Part {parts_played + 1} of your message could not be made: {error.user_message}"


async def wait_until_connected(voice: VoiceOutput, within: float) -> bool:
    """Whether `voice` is connected within `within` s. discord.py offers only a blocking
    wait (for its player thread), so this looks every few tens of milliseconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not voice.is_connected():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(_RECONNECT_POLL)
    return True


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
        reconnect_timeout: float = 30.0,
        on_idle: Callable[[GuildPlayer], Awaitable[None]] | None = None,
        on_error: Callable[[Utterance, BotError], Awaitable[None]] | None = None,
        on_gone: Callable[[GuildPlayer], Awaitable[None]] | None = None,
    ) -> None:
        self.guild_id = guild_id
        self.voice = voice
        self.idle_timeout = idle_timeout
        self.max_queue = max_queue
        self.reconnect_timeout = reconnect_timeout
        self._on_idle = on_idle
        self._on_error = on_error
        self._on_gone = on_gone
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
        if self.closed:
            raise NotConnectedError()
        if len(self._queue) >= self.max_queue:
            raise QueueFullError(per_user=False, limit=self.max_queue)
        self._queue.append(utterance)
        self._wakeup.set()
        return len(self._queue) + (1 if self.current else 0)

    def find(self, source_id: int) -> Utterance | None:
        """The queued (not yet playing) utterance that reads message `source_id`."""
        return next((u for u in self._queue if u.source_id == source_id), None)

    async def withdraw(self, utterance: Utterance) -> bool:
        """Take a queued utterance out before it plays (its message was deleted)."""
        try:
            self._queue.remove(utterance)
        except ValueError:
            return False
        await utterance.close()
        return True

    async def replace(self, old: Utterance, new: Utterance) -> bool:
        """Put `new` in `old`'s place in line (its message was edited before its turn)."""
        for index, queued in enumerate(self._queue):
            if queued is old:
                self._queue[index] = new
                await old.close()
                return True
        return False

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

    async def close(self, reason: str | None = None) -> None:
        """Stop everything and end the loop; the voice connection is the caller's to close.

        With a `reason`, each member whose message had not finished is told it.
        """
        unheard = ([self.current] if self.current is not None else []) + list(self._queue)
        await self.stop()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if reason is not None:
            for utterance in unheard:
                await utterance.report(f"⚠️ {reason}")

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
                if not await self._connection():
                    await self._gone()
                    return
                if not self._queue:  # Withdrawn or stopped while the connection came back.
                    continue
                utterance = self._queue.popleft()
                self.current = utterance
                if not await self._say(utterance):
                    await self._gone()
                    return
                self.current = None
                await utterance.close()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Player for guild %s crashed", self.guild_id)
        finally:
            if self.current is not None:
                current, self.current = self.current, None
                await current.close()

    async def _gone(self) -> None:
        """The connection did not come back: close what is left, tell its members, end."""
        log.info(
            "Guild %s: voice connection gone for %.0f s; player stops",
            self.guild_id,
            self.reconnect_timeout,
        )
        unheard = ([self.current] if self.current is not None else []) + list(self._queue)
        self._queue.clear()
        self.current = None
        for utterance in unheard:
            await utterance.close()
            await utterance.report(f"⚠️ {CONNECTION_LOST}")
        if self._on_gone is not None:
            await self._on_gone(self)

    async def _connection(self) -> bool:
        """True once the connection is usable: a re-handshake is waited out, for at most
        `reconnect_timeout` seconds."""
        if self.voice.is_connected():
            return True
        log.info("Guild %s: voice is re-handshaking; waiting for it", self.guild_id)
        back = await wait_until_connected(self.voice, self.reconnect_timeout)
        if back:
            log.info("Guild %s: voice is back", self.guild_id)
        return back

    async def _say(self, utterance: Utterance) -> bool:
        """Play every clip of `utterance`; False if the connection was lost for good."""
        try:
            async for clip in utterance.clips:
                if utterance.skipped:
                    return True
                if not await self._play(OggOpusSource(clip)):
                    return False
                utterance.parts_played += 1
                if _skipped(utterance):  # Don't make the next chunk for nobody.
                    return True
            self.played += 1
        except BotError as exc:
            log.info("Guild %s: utterance %s failed: %s", self.guild_id, utterance.id, exc)
            await utterance.report(failure_line(exc, utterance.parts_played))
            if self._on_error is not None:
                await self._on_error(utterance, exc)
        return True

    async def _play(self, source: OggOpusSource) -> bool:
        """Play one clip to its end (or a skip); False if the connection never came back."""
        loop = asyncio.get_running_loop()
        for _ in range(_PLAY_ATTEMPTS):
            if not await self._connection():
                return False
            finished: asyncio.Future[Exception | None] = loop.create_future()

            def after(
                error: Exception | None, done: asyncio.Future[Exception | None] = finished
            ) -> None:
                # Called from discord.py's player thread.
                loop.call_soon_threadsafe(_settle, done, error)

            try:
                self.voice.play(source, after=after)
            except discord.ClientException as exc:  # The connection dropped in between.
                log.info("Guild %s: cannot play yet: %s", self.guild_id, exc)
                continue
            error = await finished
            if error is not None:
                log.warning("Guild %s: playback error: %s", self.guild_id, error)
            return True
        return True


def _skipped(utterance: Utterance) -> bool:
    """Read afresh: a /skip can land while a clip plays."""
    return utterance.skipped


def _settle(future: asyncio.Future[Exception | None], error: Exception | None) -> None:
    if not future.done():
        future.set_result(error)
