"""Fixtures for the scheduler's tests: a fake clock and a `build` for schedulers on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bot.errors import SegmindError
from bot.synthesis.scheduler import Attempt, Scheduler, SchedulerConfig
from tests.synthesis.scheduler.fakes import Build, FakeClock, FakeSynth


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def build(clock: FakeClock) -> AsyncIterator[Build]:
    """Make a started scheduler on the fake clock (jitter off); closed after the test."""
    made: list[Scheduler] = []

    def make(
        synth: FakeSynth,
        *,
        start: bool = True,
        rng: Callable[[], float] = lambda: 0.0,
        probe: Callable[[], Awaitable[bool]] | None = None,
        on_halt: Callable[[SegmindError], Awaitable[None]] | None = None,
        on_resume: Callable[[], Awaitable[None]] | None = None,
        on_attempt: Callable[[Attempt], None] | None = None,
        on_limit_learned: Callable[[int], None] | None = None,
        **config: Any,
    ) -> Scheduler:
        config.setdefault("user_cooldown", 0.0)
        config.setdefault("safety_margin", 0.0)
        config.setdefault("max_waiting_per_user", 10)
        scheduler = Scheduler(
            synth,
            SchedulerConfig(**config),
            clock=clock,
            rng=rng,
            probe=probe,
            on_halt=on_halt,
            on_resume=on_resume,
            on_attempt=on_attempt,
            on_limit_learned=on_limit_learned,
        )
        if start:
            scheduler.start()
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        await scheduler.close(grace=0)
