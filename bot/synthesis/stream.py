"""A message's speech, chunk by chunk: from the cache, shared with an identical call already in
flight (in this process, or with `SharedFlights` in another), or queued through the
scheduler; always yielded in order.

Every result is normalized once to Ogg Opus, the form that is cached, posted and played, so a
cache hit needs no transcoding at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any

from bot import audio as audio_mod
from bot.audio import Audio
from bot.errors import BotError, SchedulerClosedError
from bot.locales import line
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest
from bot.synthesis.cache import Cache, NullCache, cache_key
from bot.synthesis.deadline import DeadlineError
from bot.synthesis.flight import Claim, Claiming, Flight, Pending, SharedFlights
from bot.synthesis.quota import Reservation
from bot.synthesis.scheduler import Scheduler, Ticket
from bot.synthesis.turns import MemberTurns
from bot.synthesis.usage import UsageRecorder

__all__ = ["Claim", "Pending", "SharedFlights", "SpeechSource", "SpeechStream"]

log = logging.getLogger(__name__)


class SpeechSource:
    """Turns requests into Ogg Opus audio as cheaply as possible: cache, coalescing (in this
    process, then across processes with `flights`), queue."""

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        model: str,
        cache: Cache | None = None,
        usage: UsageRecorder | None = None,
        executor: Executor | None = None,
        flights: SharedFlights | None = None,
        turns: MemberTurns | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.model = model
        self.cache: Cache = cache if cache is not None else NullCache()
        self.usage = usage
        self.flights = flights
        #: Cooldowns and waiting caps across processes, asked before each call is queued.
        self.turns = turns
        self._executor = executor
        self._flights: dict[str, Flight] = {}
        self._claiming: dict[str, Claiming] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False
        #: Requests answered without a new API call.
        self.cache_hits = 0
        self.coalesced = 0
        #: Calls this process did not make because another process made them (also coalesced).
        self.shared_flights = 0

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
        if fresh:
            return await self._call(key, request, requester, follow_up, None)
        hit = await self.cache.get(key)
        if hit is not None:
            self.cache_hits += 1
            if self.usage is not None:
                self.usage.record_cached(requester.user_id, requester.guild_id, hit.duration)
            return Pending(ready=hit)
        joined = self._join(key, requester)
        if joined is not None:
            return joined
        if self.flights is None or self._stopped:
            return await self._call(key, request, requester, follow_up, None)
        return await self._begin_shared(self.flights, key, request, requester, follow_up)

    def _join(self, key: str, requester: Requester) -> Pending | None:
        flight = self._flights.get(key)
        if flight is None or flight.future.done():
            return None
        flight.waiters += 1
        self.coalesced += 1
        pending = Pending(flight=flight, joined=True)
        self._count_shared(pending, requester)
        return pending

    async def _begin_shared(
        self,
        flights: SharedFlights,
        key: str,
        request: SpeechRequest,
        requester: Requester,
        follow_up: bool,
    ) -> Pending:
        """A local miss: claim the key across processes, or wait for the process that has."""
        claiming = self._claiming.setdefault(key, Claiming())
        claiming.users += 1
        try:
            async with claiming.lock:
                joined = self._join(key, requester)  # a request ahead of this one claimed it
                if joined is not None:
                    return joined
                outcome = await flights.claim(key)
                if outcome is None:
                    return self._await_other(key, request, requester, follow_up)
                if isinstance(outcome, Audio):
                    self._answered(requester, outcome)
                    await self.cache.put(key, outcome)
                    return Pending(ready=outcome)
                try:
                    return await self._call(key, request, requester, follow_up, outcome)
                except BaseException:
                    await outcome.release()
                    raise
        finally:
            claiming.users -= 1
            if claiming.users == 0:
                del self._claiming[key]

    async def _call(
        self,
        key: str,
        request: SpeechRequest,
        requester: Requester,
        follow_up: bool,
        claim: Claim | None,
    ) -> Pending:
        """Queue the call (a refusal raises) as a flight identical requests can join."""
        ticket = await self._submit(request, requester, follow_up)
        flight = self._new_flight(key, ticket)
        flight.task = self._spawn(self._complete(flight, claim), f"speech-{ticket.id}")
        return Pending(flight=flight)

    async def _submit(
        self, request: SpeechRequest, requester: Requester, follow_up: bool
    ) -> Ticket:
        """The member's turn across processes (`turns`), then this process's scheduler."""
        if self.turns is None:
            return self.scheduler.submit(request, requester, follow_up=follow_up)
        turn = await self.turns.take(requester, follow_up=follow_up)
        try:
            ticket = self.scheduler.submit(request, requester, follow_up=follow_up)
        except BaseException:
            await turn.give_back()
            raise
        turn.bind(ticket)
        return ticket

    async def refusal(self, requester: Requester) -> BotError | None:
        """What a new message's first call would be refused now, queueing nothing: this
        process's scheduler's refusal, then the cluster's (`turns`)."""
        refused = self.scheduler.refusal(requester)
        if refused is None and self.turns is not None:
            refused = await self.turns.refusal(requester)
        return refused

    def _await_other(
        self, key: str, request: SpeechRequest, requester: Requester, follow_up: bool
    ) -> Pending:
        """Another process is making it: a flight fed by its answer, holding no ticket."""
        flight = self._new_flight(key, None)
        pending = Pending(flight=flight)
        flight.task = self._spawn(
            self._relay(flight, pending, request, requester, follow_up), f"speech-wait-{key[:12]}"
        )
        return pending

    def _new_flight(self, key: str, ticket: Ticket | None) -> Flight:
        future: asyncio.Future[Audio] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume_error)
        flight = Flight(key, ticket, future)
        self._flights[key] = flight
        return flight

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _land(self, flight: Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    def _answered(self, requester: Requester | None, audio: Audio) -> None:
        """Another process's call answered this request (None: its member gave up, others
        joined it): a call saved, and a free use like a shared one."""
        self.shared_flights += 1
        if requester is None:
            return
        self.coalesced += 1
        if self.usage is not None:
            self.usage.record_cached(requester.user_id, requester.guild_id, audio.duration)

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

    async def _relay(
        self,
        flight: Flight,
        pending: Pending,
        request: SpeechRequest,
        requester: Requester,
        follow_up: bool,
    ) -> None:
        """Wait for another process's answer; if its claim goes without one, call here."""
        assert self.flights is not None
        try:
            outcome = await self.flights.wait(flight.key)
        except asyncio.CancelledError:  # nobody wants it any more, or shutting down
            self._land(flight)
            if not flight.future.done():
                flight.future.cancel()
            return
        if isinstance(outcome, Audio):
            self._land(flight)
            self._answered(None if pending.released else requester, outcome)
            flight.future.set_result(outcome)
            await self.cache.put(flight.key, outcome)
            return
        try:
            flight.ticket = await self._submit(request, requester, follow_up)
        except BaseException as exc:  # refused now (cooldown, full queue, closing)
            self._land(flight)
            flight.future.set_exception(exc)
            await outcome.release()
            return
        for told in flight.on_ticket:
            told()
        await self._complete(flight, outcome)

    async def _complete(self, flight: Flight, claim: Claim | None) -> None:
        assert flight.ticket is not None
        try:
            # Taken, not read: the upstream answer is dropped once normalized.
            audio = await self.normalize(await flight.ticket.take_result())
        except asyncio.CancelledError:
            self._land(flight)
            if not flight.future.done():
                flight.future.cancel()
            if claim is not None:
                await claim.release()
            return
        except BaseException as exc:
            self._land(flight)
            if not flight.future.done():
                flight.future.set_exception(exc)
            if claim is not None:
                await claim.release()
            return
        self._land(flight)
        flight.future.set_result(audio)
        if claim is not None:
            await claim.publish(audio)
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

    def stop_waiting(self) -> None:
        """Shutdown: requests waiting for another process's answer fail as queued ones do
        when the scheduler closes (their members are told), instead of holding shutdown;
        later requests no longer wait for other processes either."""
        self._stopped = True
        for flight in list(self._flights.values()):
            if flight.ticket is None and not flight.future.done() and flight.task is not None:
                flight.future.set_exception(SchedulerClosedError())
                flight.task.cancel()

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

    A `reservation` (the member's daily quota, one call per chunk) is given back chunk by
    chunk as each settles: at once for a chunk from the cache, one that joined a call another
    request made, one refused, and one never asked for (cancelled before its turn); when its
    call ends for one this stream called for (withdrawn, failed, or paid: the usage recorder
    counts a paid call in the same step its ticket ends). A chunk cancelled while its call
    runs stays counted until that call ends: it is paid all the same.
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
        reservation: Reservation | None = None,
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
        held = reservation is not None and reservation.held > 0
        self._reservation = reservation if held else None
        #: Per chunk: still counted in the reservation.
        self._counted = [held] * len(self.requests)
        #: Chunks asked for so far (the rest can still be given back on cancel).
        self._asked = 0

    async def start(self) -> SpeechStream:
        """Request the first chunk; refusals (cooldown, full queue, paused) raise here, and
        give back the whole reservation. Once only, and never for a stream given up (a
        message withdrawn before it was started)."""
        if self.closed or self.pending:
            return self
        try:
            pending = await self._begin(0)
        except BaseException:
            self.cancel()
            raise
        self.pending.append(pending)  # `_begin` releases it if given up meanwhile.
        return self

    @property
    def total(self) -> int:
        return len(self.requests)

    @property
    def started(self) -> bool:
        """Its first chunk has been asked for (`start`, or its audio wanted)."""
        return bool(self.pending)

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
        """Told when the stream moves on to its next chunk, and when a chunk another process
        was making is queued here after all (its call failed or the process died)."""
        self._listeners.append(callback)

    async def _begin(self, index: int) -> Pending:
        self._asked = max(self._asked, index + 1)
        try:
            pending = await self._source.begin(
                self.requests[index], self.requester, follow_up=index > 0, fresh=self._fresh
            )
        except BaseException:
            self._settle(index)  # refused: never made
            raise
        self._settle_when_made(index, pending)
        if self.closed:  # cancelled while this chunk was being asked for
            pending.release()
        if pending.flight is not None and pending.ticket is None:
            # Another process makes it; if this one ends up queueing it, progress shows that.
            pending.flight.on_ticket.append(self._tell)
        return pending

    def _settle_when_made(self, index: int, pending: Pending) -> None:
        """Give the chunk's reservation back once nothing more can be paid for it: when its
        ticket ends (the usage recorder counted a paid call in that same step), or when its
        flight does without one (another process's answer, or given up while waiting)."""
        if self._reservation is None:
            return
        flight = pending.flight
        if flight is None or pending.joined:
            self._settle(index)  # the cache, another process, or another request's call
            return

        def settle(_: object = None) -> None:
            self._settle(index)

        def ticketed() -> None:
            assert flight.ticket is not None
            flight.ticket.when_done(settle)

        flight.future.add_done_callback(settle)
        if flight.ticket is not None:
            flight.ticket.when_done(settle)
        else:  # another process makes it, unless its call fails and this one is queued
            flight.on_ticket.append(ticketed)

    def _settle(self, index: int) -> None:
        if self._reservation is not None and self._counted[index]:
            self._counted[index] = False
            self._reservation.release()

    def _tell(self) -> None:
        for listener in self._listeners:
            listener(self)

    async def audio(self) -> AsyncIterator[Audio]:
        """Each chunk's audio as soon as it and every chunk before it is ready."""
        try:
            while self.index < self.total:
                while not self.closed and len(self.pending) < min(
                    self.total, self.index + self._parallel
                ):
                    self.pending.append(await self._begin(len(self.pending)))
                if self.closed:  # cancelled, perhaps while a chunk was being asked for
                    break
                result = await self._result(self.pending[self.index])
                self.index += 1
                self._tell()
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
                user_message=line("deadline.missed"),
            ) from None

    async def collect(self) -> list[Audio]:
        return [audio async for audio in self.audio()]

    def cancel(self) -> None:
        """Give up every chunk not yet delivered; calls nobody else shares are withdrawn, and
        chunks never asked for give their reservation back."""
        self.closed = True
        for pending in self.pending[self.index :]:
            pending.release()
        for index in range(self._asked, self.total):
            self._settle(index)
