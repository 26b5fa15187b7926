"""One deadline for a whole chat message, inside the interaction token's 15 minutes (issue 10,
defect 4): refused up front when the queue cannot meet it, withdrawn when it passes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from bot import audio
from bot.audio import Audio
from bot.config import Settings
from bot.speech.access import Caller
from bot.speech.request import SpeechRequest
from bot.synthesis.deadline import DeadlineError, estimate_seconds, too_slow
from bot.synthesis.scheduler import Scheduler, SchedulerConfig
from bot.synthesis.service import SpeechService
from tests.signals import tone

LONG = "".join(f"Sentence number {i} makes the text long enough for chunks. " for i in range(12))


class Gated:
    """Answers only once the gate opens; records what was asked."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.gate = asyncio.Event()

    async def __call__(self, request: SpeechRequest) -> Audio:
        self.texts.append(request.text)
        await self.gate.wait()
        return audio.probe(audio.encode_wav(tone(0.2)), audio.AudioFormat.WAV)


@pytest.fixture(params=[5])
async def slow(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings]
) -> AsyncIterator[tuple[SpeechService, Gated]]:
    synth = Gated()
    config = SchedulerConfig(
        rpm=request.param, user_cooldown=0, initial_latency=0.01, max_concurrency=1
    )
    scheduler = Scheduler(synth, config)
    scheduler.start()
    settings = make_settings(chunk_chars=100, first_chunk_chars=60, chunk_parallelism=2)
    yield SpeechService(settings, scheduler), synth
    synth.gate.set()
    await scheduler.close(grace=0)


def test_the_estimate_counts_rate_slots_and_latency() -> None:
    # 10 calls behind 20 others at 5 a minute: 29 slots of 12 s, plus 5 rounds of 20 s.
    estimate = estimate_seconds(queued=20, calls=10, rpm=5, window=60, latency=20, parallel=2)
    assert estimate == 29 * 12 + 5 * 20
    assert too_slow(estimate, 14 * 60, 10) is None
    refusal = too_slow(estimate, 300, 10)
    assert refusal is not None
    assert "Nothing was spent" in refusal.user_message


async def test_a_message_that_cannot_meet_its_deadline_is_refused_before_any_call(
    slow: tuple[SpeechService, Gated],
) -> None:
    service, synth = slow
    with pytest.raises(DeadlineError):
        await service.begin(Caller(1), LONG, within=30)
    await asyncio.sleep(0)
    assert synth.texts == []
    assert service.source.scheduler.queue_snapshot() == []


@pytest.mark.parametrize("slow", [600], indirect=True)
async def test_what_is_unmade_when_the_deadline_passes_is_withdrawn(
    slow: tuple[SpeechService, Gated],
) -> None:
    service, synth = slow
    two_parts = "First part of the message is here. " * 2 + "Second part follows it. " * 2
    stream = await service.begin(Caller(1), two_parts, within=0.5)
    assert stream.total == 2
    with pytest.raises(DeadlineError):
        await stream.collect()
    assert stream.closed
    _, second = stream.tickets
    assert second.cancelled  # Queued behind the first: withdrawn, never paid for.
    assert len(synth.texts) == 1
