"""A message's speech, chunk by chunk: from the cache, shared with an identical call already in
flight, or queued through the scheduler; always yielded in order.

Every result is normalized once to Ogg Opus, the form that is cached, posted and played, so a
cache hit needs no transcoding at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

from bot import audio as audio_mod
from bot.audio import Audio
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest
from bot.synthesis.cache import Cache, NullCache, cache_key
from bot.synthesis.deadline import DeadlineError
from bot.synthesis.scheduler import Scheduler, Ticket
from bot.synthesis.usage import UsageRecorder

__all__ = ["Pending", "SpeechSource", "SpeechStream"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Flight:
    """One API call that identical requests share."""

    key: str
    ticket: Ticket
    future: asyncio.Future[Audio]
    waiters: int = 1


@dataclass(eq=False)
class Pending:
    """One chunk's audio to come (or already here)."""

    ready: Audio | None = None
    flight: _Flight | None = None
    released: bool = field(default=False)

    @property
    def ticket(self) -> Ticket | None:
        """The queued call, for progress; None for a cache hit."""
        return self.flight.ticket if self.flight else None

    async def result(self) -> Audio:
        if self.ready is not None:
            return self.ready
        assert self.flight is not None
        # Shielded: one waiter giving up must not cancel the call others share.
        return await asyncio.shield(self.flight.future)

    def release(self) -> None:
        """This waiter no longer wants it; the call is withdrawn once nobody does."""
        if self.flight is None or self.released:
            return
        self.released = True
        self.flight.waiters -= 1
        if self.flight.waiters <= 0 and not self.flight.future.done():
            self.flight.ticket.cancel()


class SpeechSource:
    """Turns requests into Ogg Opus audio as cheaply as possible: cache, coalescing, queue."""

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        model: str,
        cache: Cache | None = None,
        usage: UsageRecorder | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.model = model
        self.cache: Cache = cache if cache is not None else NullCache()
        self.usage = usage
        self._executor = executor
        self._flights: dict[str, _Flight] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Requests answered without a new API call.
        self.cache_hits = 0
        self.coalesced = 0

    async def begin(
        self,
        request: SpeechRequest,
        requester: Requester,
        *,
        follow_up: bool = False,
        fresh: bool = False,
    ) -> Pending:
        """Start getting `request`'s audio; a refusal (cooldown, full queue) raises here."""
        key = cache_key(request, model=self.model)
        if not fresh:
            hit = await self.cache.get(key)
            if hit is not None:
                self.cache_hits += 1
                if self.usage is not None:
                    self.usage.record_cached(requester.user_id, requester.guild_id, hit.duration)
                return Pending(ready=hit)
            flight = self._flights.get(key)
            if flight is not None and not flight.future.done():
                flight.waiters += 1
                self.coalesced += 1
                pending = Pending(flight=flight)
                self._count_shared(pending, requester)
                return pending
        ticket = self.scheduler.submit(request, requester, follow_up=follow_up)
        future: asyncio.Future[Audio] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume_error)
        flight = _Flight(key, ticket, future)
        self._flights[key] = flight
        task = asyncio.create_task(self._complete(flight), name=f"speech-{ticket.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Pending(flight=flight)

    def _count_shared(self, pending: Pending, requester: Requester) -> None:
        """A request that joined a call in flight is a use like a cache hit (free): recorded
        once the shared call delivers, unless this member gave up on it first."""
        usage = self.usage
        if usage is None or pending.flight is None:
            return

        def record(future: asyncio.Future[Audio]) -> None:
            if pending.released or future.cancelled() or future.exception() is not None:
                return
            usage.record_cached(requester.user_id, requester.guild_id, future.result().duration)

        pending.flight.future.add_done_callback(record)

    async def _complete(self, flight: _Flight) -> None:
        try:
            audio = await self.normalize(await flight.ticket.result())
        except asyncio.CancelledError:
            if not flight.future.done():
                flight.future.cancel()
            return
        except BaseException as exc:
            if not flight.future.done():
                flight.future.set_exception(exc)
            return
        finally:
            if self._flights.get(flight.key) is flight:
                del self._flights[flight.key]
        flight.future.set_result(audio)
        await self.cache.put(flight.key, audio)

    async def normalize(self, audio: Audio) -> Audio:
        """Ogg Opus, off the event loop: decoding and encoding take milliseconds per second.

        Passed-through Ogg Opus drops the samples its check decoded: the result is shared,
        queued and cached, and those samples are ten times its size.
        """
        if audio.format is audio_mod.AudioFormat.OGG and audio_mod.is_ogg_opus(audio.data):
            return replace(audio, decoded=None) if audio.decoded is not None else audio
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, audio_mod.to_ogg_opus, audio)

    async def drain(self) -> None:
        """Wait for results still being normalized and cached (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _consume_error(future: asyncio.Future[Audio]) -> None:
    # A failure nobody awaited (everyone gave up) is not an "exception never retrieved".
    if not future.cancelled():
        future.exception()


class SpeechStream:
    """A message made chunk by chunk, yielded in order.

    At most `parallel` chunks are requested ahead of the one being waited for, so one long
    message neither floods the queue nor pays for chunks nobody will hear after a skip.
    """

    def __init__(
        self,
        source: SpeechSource,
        requester: Requester,
        requests: Sequence[SpeechRequest],
        *,
        parallel: int = 2,
        fresh: bool = False,
        deadline: float | None = None,
    ) -> None:
        if not requests:
            raise ValueError("nothing to say")
        self._source = source
        self.requester = requester
        self.requests = list(requests)
        self._parallel = max(1, parallel)
        self._fresh = fresh
        self.pending: list[Pending] = []
        self.index = 0
        self.closed = False
        #: Event-loop time by which every chunk must be made; what is left then is withdrawn.
        self.deadline = deadline
        self._listeners: list[Callable[[SpeechStream], None]] = []

    async def start(self) -> SpeechStream:
        """Request the first chunk; refusals (cooldown, full queue, paused) raise here."""
        self.pending.append(await self._begin(0))
        return self

    @property
    def total(self) -> int:
        return len(self.requests)

    @property
    def current(self) -> Ticket | None:
        """The queued call whose audio is awaited next; None when it needs no call."""
        if not self.pending:
            return None
        return self.pending[min(self.index, len(self.pending) - 1)].ticket

    @property
    def tickets(self) -> list[Ticket]:
        return [p.ticket for p in self.pending if p.ticket is not None]

    def add_listener(self, callback: Callable[[SpeechStream], None]) -> None:
        """Told when the stream moves on to its next chunk."""
        self._listeners.append(callback)

    async def _begin(self, index: int) -> Pending:
        return await self._source.begin(
            self.requests[index], self.requester, follow_up=index > 0, fresh=self._fresh
        )

    async def audio(self) -> AsyncIterator[Audio]:
        """Each chunk's audio as soon as it and every chunk before it is ready."""
        try:
            while self.index < self.total and not self.closed:
                while len(self.pending) < min(self.total, self.index + self._parallel):
                    self.pending.append(await self._begin(len(self.pending)))
                result = await self._result(self.pending[self.index])
                self.index += 1
                for listener in self._listeners:
                    listener(self)
                yield result
        finally:
            if self.index < self.total:
                self.cancel()

    async def _result(self, pending: Pending) -> Audio:
        if self.deadline is None:
            return await pending.result()
        try:
            async with asyncio.timeout_at(self.deadline):
                return await pending.result()
        except TimeoutError:
            self.cancel()
            log.info("Message for user %s missed its deadline", self.requester.user_id)
            raise DeadlineError(
                "message deadline passed",
                user_message=(
                    "Your message could not be made within Discord's reply window, so the "
                    "rest of it was cancelled. Please try again, or a shorter text."
                ),
            ) from None

    async def collect(self) -> list[Audio]:
        return [audio async for audio in self.audio()]

    def cancel(self) -> None:
        """Give up every chunk not yet delivered; calls nobody else shares are withdrawn."""
        self.closed = True
        for pending in self.pending[self.index :]:
            pending.release()
