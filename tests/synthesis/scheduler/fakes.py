"""Fakes for the scheduler's tests: a clock that moves only when told, a scripted synthesize,
a synthesize that enforces a key's real limit, and the `build` fixture (in conftest.py)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from bot.audio import Audio, AudioFormat, encode_wav, probe
from bot.errors import RateLimitedError
from bot.speech.request import SpeechRequest
from bot.synthesis.scheduler import Scheduler, Ticket
from tests.signals import tone

AUDIO = probe(encode_wav(tone(0.05)), AudioFormat.WAV)


async def settle(rounds: int = 50) -> None:
    """Let every task that can run, run (each round is one pass of the event loop)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class FakeClock:
    """Time moves only in `advance`; due sleepers wake in order, the loop settling after each.

    It starts at 1000 rather than 0 so code that mistakes 0.0 for "unset" gets caught.
    """

    def __init__(self, origin: float = 1000.0) -> None:
        self.origin = origin
        self._now = origin
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    @property
    def elapsed(self) -> float:
        return self._now - self.origin

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    async def advance(self, seconds: float) -> None:
        await self.advance_to(self.elapsed + seconds)

    async def advance_to(self, elapsed: float) -> None:
        """Move to `origin + elapsed`, waking sleepers one at a time at their own moments."""
        target = self.origin + elapsed
        await settle()
        while True:
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)  # cancelled
            if not self._sleepers or self._sleepers[0][0] > target:
                break
            when, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, when)
            future.set_result(None)
            await settle()
        self._now = max(self._now, target)
        await settle()


@dataclass(frozen=True)
class Call:
    at: float  # seconds since the clock's origin
    text: str

    @property
    def user(self) -> int:
        return int(self.text.split(":")[0])


class FakeSynth:
    """A scripted `synthesize`: records calls, takes `latency` on the fake clock, then returns
    audio or raises the next error planned for that text."""

    def __init__(self, clock: FakeClock, latency: float | Callable[[str], float] = 0.0) -> None:
        self.clock = clock
        self.latency = latency
        self.calls: list[Call] = []
        self.plans: dict[str, deque[BaseException]] = defaultdict(deque)
        self.in_flight = 0
        self.max_in_flight = 0

    def plan(self, text: str, *errors: BaseException) -> None:
        self.plans[text].extend(errors)

    async def __call__(self, request: SpeechRequest) -> Audio:
        self.calls.append(Call(self.clock.elapsed, request.text))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            plan = self.plans[request.text]
            error = plan.popleft() if plan else None
            latency = self.latency(request.text) if callable(self.latency) else self.latency
            if latency > 0:
                await self.clock.sleep(latency)
            if error is not None:
                raise error
            return AUDIO
        finally:
            self.in_flight -= 1

    def texts(self) -> list[str]:
        return [call.text for call in self.calls]

    def times(self) -> list[float]:
        return [call.at for call in self.calls]


def req(text: str) -> SpeechRequest:
    return SpeechRequest(text=text)


def limited(retry_after: float | None) -> RateLimitedError:
    error = RateLimitedError(status=429)
    error.retry_after = retry_after
    return error


async def outcome(ticket: Ticket) -> Audio | BaseException:
    """A finished ticket's audio or error (checked finished first, so a test fails, not hangs)."""
    assert ticket.state in ("done", "failed"), ticket
    try:
        return await ticket.result()
    except (Exception, asyncio.CancelledError) as exc:
        return exc


def is_halted(scheduler: Scheduler) -> bool:
    """Read through a call, so mypy does not keep an earlier narrowing of `halted`."""
    return scheduler.halted is not None


def broken_listener(ticket: Ticket) -> None:
    raise ZeroDivisionError


Build = Callable[..., Scheduler]


class KeyLimitedSynth:
    """A synthesize behind a key that really allows `limit` calls per `window` (sliding, counted
    on arrival like the server does): past it a 429, with the reset time or without."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        limit: int,
        window: float,
        latency: float,
        reset_headers: bool = True,
    ) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self.latency = latency
        self.reset_headers = reset_headers
        self.accepted: deque[float] = deque()
        self.log: list[tuple[float, int]] = []  # (arrival, status)

    async def __call__(self, request: SpeechRequest) -> Audio:
        now = self.clock.now()
        while self.accepted and self.accepted[0] <= now - self.window:
            self.accepted.popleft()
        if len(self.accepted) >= self.limit:
            self.log.append((now, 429))
            await asyncio.sleep(0)
            wait = self.accepted[0] + self.window - now
            raise limited(wait if self.reset_headers else None)
        self.accepted.append(now)
        self.log.append((now, 200))
        await self.clock.sleep(self.latency)
        return AUDIO
