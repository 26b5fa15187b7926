"""One player per server: a queue of utterances played one after another into a voice client.

An utterance yields its clips as they become ready, so a long text starts speaking when its
first chunk is synthesised while the rest are still being made.

A voice connection re-handshakes now and then (a voice server change, a 4015 resume, the
bot's own move): for a network round trip or several, `is_connected()` is False although
the bot still sits in the channel. The player waits that out, for `reconnect_timeout`
seconds, instead of treating it as the end; only a connection that does not come back ends
the player, and then every message still queued is closed (its unpaid calls withdrawn) and
its member told, rather than left to be made and paid for nobody.

On a Stage the bot is heard only as a speaker: while it is in the audience the player plays
and starts nothing (`bot.playback.stage`), and a moderator's invitation lets it go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

import discord

from bot.errors import BotError, NotConnectedError, QueueFullError
from bot.locales import line
from bot.playback.dave import wait_for_dave
from bot.playback.source import OggOpusSource
from bot.playback.stage import STAGE_WAIT, StageGate, wait_over_line
from bot.playback.utterance import Utterance, failure_line, single_clip

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

#: What a member whose message was waiting hears when the connection is gone for good.
CONNECTION_LOST = line("playback.connection_lost")
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
        stage_wait: float = STAGE_WAIT,
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
        self.stage = StageGate(stage_wait)
        self._starts: dict[int, asyncio.Task[bool]] = {}
        #: A clip is being played; and it was cut off by the bot going to the audience.
        self._playing = False
        self._cut = False
        self._task: asyncio.Task[None] | None = asyncio.create_task(
            self._run(), name=f"player-{guild_id}"
        )

    @property
    def queue(self) -> list[Utterance]:
        return list(self._queue)

    @property
    def closed(self) -> bool:
        return self._task is None or self._task.done()

    @property
    def held(self) -> bool:
        """In a Stage's audience: nothing is played or started until a moderator invites
        the bot to speak."""
        return self.stage.held

    def hold(self) -> None:
        """The bot went to a Stage's audience: keep everything until `release`. A clip
        playing now reaches nobody from here, so it is cut and played again, from its start,
        once the bot is heard."""
        if not self.stage.hold(self._unheard(), asyncio.get_running_loop().time()):
            return
        log.info("Guild %s: in the stage audience; holding playback", self.guild_id)
        if self._playing:
            self._cut = True
            self.voice.stop()

    def release(self) -> None:
        """The bot may be heard again (a moderator invited it): play what waited, and start
        making what was held unmade."""
        if not self.stage.release(self._unheard()):
            return
        log.info("Guild %s: a speaker on the stage; playback goes on", self.guild_id)
        for utterance in self._queue:
            self._begin(utterance)

    def enqueue(self, utterance: Utterance) -> int:
        """Add to the end; returns its place (1 = plays next or now)."""
        if self.closed:
            raise NotConnectedError()
        if len(self._queue) >= self.max_queue:
            raise QueueFullError(per_user=False, limit=self.max_queue)
        self._queue.append(utterance)
        self.stage.mark(utterance, asyncio.get_running_loop().time())
        if not self.held:
            self._begin(utterance)
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
                new.held_since = old.held_since  # Its wait goes on: it is the same turn.
                if not self.held:
                    self._begin(new)
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
        self.stage.poke()  # Held in a Stage's audience: it is given up now, not when heard.
        return True

    async def stop(self) -> int:
        """Clear the queue and stop what is playing; returns how many were dropped."""
        dropped = list(self._queue)
        self._queue.clear()
        for utterance in dropped:
            await utterance.close()
        self.skip()
        self.stage.poke()
        return len(dropped)

    async def close(self, reason: str | None = None) -> None:
        """Stop everything and end the loop; the voice connection is the caller's to close.

        With a `reason`, each member whose message had not finished is told it.
        """
        unheard = self._unheard()
        await self.stop()
        await self._cancel_starts()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if reason is not None:
            for utterance in unheard:
                await utterance.report(line("playback.warning", message=reason))

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
                if not await self._stage_cleared(None):
                    continue  # Some waited past the Stage's bound: look again.
                if not await self._connection():
                    await self._gone()
                    return
                if not self._queue or self.held:  # Changed while the connection came back.
                    continue
                utterance = self._queue.popleft()
                self.current = utterance
                if not await self._started(utterance):
                    self.current = None
                    continue
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
        unheard = self._unheard()
        self._queue.clear()
        self.current = None
        await self._cancel_starts()
        for utterance in unheard:
            await utterance.close()
            await utterance.report(line("playback.warning", message=CONNECTION_LOST))
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
                if not await self._play_heard(utterance, clip):
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

    async def _play_heard(self, utterance: Utterance, clip: bytes) -> bool:
        """Play one clip where it is heard: held in a Stage's audience (the clip kept), and
        played again from its start if the bot went to the audience while it played. False
        if the connection was lost for good."""
        while not _skipped(utterance):
            if not await self._stage_cleared(utterance):
                continue  # `utterance` is skipped if it waited past the bound.
            self._cut = False
            if not await self._play(OggOpusSource(clip)):
                return False
            if not self._cut:
                return True
        return True

    async def _play(self, source: OggOpusSource) -> bool:
        """Play one clip to its end (or a skip); False if the connection never came back."""
        loop = asyncio.get_running_loop()
        for _ in range(_PLAY_ATTEMPTS):
            if not await self._connection():
                return False
            # Frames sent before the bot is in the call's encryption group reach nobody.
            await wait_for_dave(self.voice, self.guild_id)
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
            self._playing = True
            try:
                error = await finished
            finally:
                self._playing = False
            if error is not None:
                log.warning("Guild %s: playback error: %s", self.guild_id, error)
            return True
        return True

    # -- the Stage's audience ---------------------------------------------------------------

    def _unheard(self) -> list[Utterance]:
        """What is playing and what waits, in order."""
        return ([self.current] if self.current is not None else []) + list(self._queue)

    def _begin(self, utterance: Utterance) -> None:
        """Queue the calls of a message accepted while the bot could not be heard."""
        if utterance.start is None or utterance.id in self._starts:
            return
        task = asyncio.create_task(self._start(utterance), name=f"start-{utterance.id}")
        self._starts[utterance.id] = task
        task.add_done_callback(lambda _: self._starts.pop(utterance.id, None))

    async def _start(self, utterance: Utterance) -> bool:
        """Run `utterance.start`; a refusal now (a full queue) is told and the message taken
        out of line. False if refused."""
        start, utterance.start = utterance.start, None
        if start is None:
            return True
        try:
            await start()
        except BotError as exc:
            log.info("Guild %s: utterance %s refused: %s", self.guild_id, utterance.id, exc)
            with contextlib.suppress(ValueError):
                self._queue.remove(utterance)
            await utterance.close()
            await utterance.report(failure_line(exc, 0))
            return False
        return True

    async def _started(self, utterance: Utterance) -> bool:
        """Wait until the message about to play has queued its calls; False if refused."""
        task = self._starts.get(utterance.id)
        if task is not None:
            return await asyncio.shield(task)
        return await self._start(utterance)

    async def _cancel_starts(self) -> None:
        tasks = [t for t in self._starts.values() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _stage_cleared(self, current: Utterance | None) -> bool:
        """True once the bot may be heard. False once a message waited in a Stage's
        audience as long as it may: each such one is given up (its unmade calls withdrawn,
        its member told; `current` is marked skipped and closed by the loop)."""
        if await self.stage.heard(self._unheard()):
            return True
        now = asyncio.get_running_loop().time()
        over = [u for u in self._queue if self.stage.over(u, now)]
        for utterance in over:
            self._queue.remove(utterance)
            await utterance.close()
        if current is not None and self.stage.over(current, now):
            current.skipped = True
            over.insert(0, current)
        if over:
            log.info(
                "Guild %s: %d messages waited %.0f s for a stage invitation; given up",
                self.guild_id,
                len(over),
                self.stage.wait,
            )
        given_up = line("playback.warning", message=wait_over_line(self.stage.wait))
        for utterance in over:
            await utterance.report(given_up)
        return False


def _skipped(utterance: Utterance) -> bool:
    """Read afresh: a /skip can land while a clip plays."""
    return utterance.skipped


def _settle(future: asyncio.Future[Exception | None], error: Exception | None) -> None:
    if not future.done():
        future.set_result(error)
