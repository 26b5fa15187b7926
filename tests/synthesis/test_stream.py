"""Cache and coalescing in the speech path: fewer calls, same bytes, never on the event loop."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot import audio
from bot.audio import Audio, AudioFormat
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest, build_request
from bot.synthesis.cache import AudioCache
from bot.synthesis.scheduler import Scheduler, SchedulerConfig, Ticket
from bot.synthesis.stream import SpeechSource, SpeechStream
from tests.signals import tone


class Synth:
    """Answers in WAV (as an upstream might), after a gate the test controls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.answers: list[Audio] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, request: SpeechRequest) -> Audio:
        self.calls.append(request.text)
        await self.gate.wait()
        seconds = 0.5 + len(request.text) / 100
        self.answers.append(audio.probe(audio.encode_wav(tone(seconds)), AudioFormat.WAV))
        return self.answers[-1]


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[SpeechSource, Synth, AudioCache]]:
    synth = Synth()
    scheduler = Scheduler(
        synth, SchedulerConfig(rpm=1000, user_cooldown=0, max_waiting_per_user=50)
    )
    scheduler.start()
    cache = AudioCache(memory_bytes=1 << 20, disk_dir=tmp_path / "cache")
    await cache.open()
    source = SpeechSource(scheduler, model="m", cache=cache)
    yield source, synth, cache
    await source.drain()
    await scheduler.close(grace=0)


async def say(source: SpeechSource, user: int, text: str, **kw: Any) -> list[Audio]:
    stream = await SpeechStream(source, Requester(user), [build_request(text)], **kw).start()
    return await stream.collect()


async def test_a_repeated_request_makes_no_call_and_returns_identical_bytes(
    parts: tuple[SpeechSource, Synth, AudioCache],
) -> None:
    source, synth, _ = parts
    (first,) = await say(source, 1, "Good morning, everyone!")
    await source.drain()
    (again,) = await say(source, 2, "Good morning, everyone!")
    assert synth.calls == ["Good morning, everyone!"]
    assert again.data == first.data
    assert audio.is_ogg_opus(first.data)  # Normalized once, from the upstream's WAV.
    assert first.duration == pytest.approx(0.5 + 23 / 100, abs=0.01)
    assert source.cache_hits == 1


async def test_a_made_chunk_holds_its_ogg_opus_not_the_upstreams_answer(
    parts: tuple[SpeechSource, Synth, AudioCache],
) -> None:
    # A message waiting to be read holds its stream, its stream the tickets: the WAV answer
    # (and the samples checked with it) must not live as long as that.
    source, synth, _ = parts
    stream = await SpeechStream(source, Requester(1), [build_request("Let it go")]).start()
    (made,) = await stream.collect()
    (answer,) = synth.answers
    assert audio.is_ogg_opus(made.data)
    assert answer.format is AudioFormat.WAV
    gc.collect()
    assert not [holder for holder in gc.get_referrers(answer) if isinstance(holder, Ticket)]
    with pytest.raises(RuntimeError, match="taken"):
        await stream.tickets[0].result()


async def test_ten_identical_concurrent_requests_make_one_call(
    parts: tuple[SpeechSource, Synth, AudioCache],
) -> None:
    source, synth, _ = parts
    synth.gate.clear()
    waits = [asyncio.create_task(say(source, user, "Welcome!")) for user in range(10)]
    await asyncio.sleep(0.05)
    synth.gate.set()
    results = await asyncio.gather(*waits)
    assert synth.calls == ["Welcome!"]
    assert source.coalesced == 9
    assert len({result[0].data for result in results}) == 1


async def test_fresh_asks_again_and_replaces_the_cached_take(
    parts: tuple[SpeechSource, Synth, AudioCache],
) -> None:
    source, synth, _ = parts
    await say(source, 1, "Once more")
    await source.drain()
    await say(source, 1, "Once more", fresh=True)
    assert synth.calls == ["Once more", "Once more"]


async def test_one_waiter_giving_up_does_not_cancel_a_shared_call(
    parts: tuple[SpeechSource, Synth, AudioCache],
) -> None:
    source, synth, _ = parts
    synth.gate.clear()
    leaving = await SpeechStream(source, Requester(1), [build_request("Shared")]).start()
    staying = asyncio.create_task(say(source, 2, "Shared"))
    await asyncio.sleep(0.02)
    leaving.cancel()
    synth.gate.set()
    (result,) = await staying
    assert audio.is_ogg_opus(result.data)
    assert synth.calls == ["Shared"]


async def test_a_call_nobody_wants_any_more_is_withdrawn() -> None:
    synth = Synth()
    synth.gate.clear()
    scheduler = Scheduler(synth, SchedulerConfig(rpm=1000, user_cooldown=0, max_concurrency=1))
    scheduler.start()
    source = SpeechSource(scheduler, model="m")
    try:
        busy = asyncio.create_task(say(source, 1, "Busy"))  # Holds the only slot.
        await asyncio.sleep(0.02)
        streams = [
            await SpeechStream(source, Requester(u), [build_request("Unwanted")]).start()
            for u in (2, 3)
        ]
        ticket = streams[0].current
        assert ticket is not None
        assert ticket is streams[1].current  # Shared, not queued twice.
        streams[0].cancel()
        assert ticket.state == "queued"  # One member still wants it.
        streams[1].cancel()
        assert ticket.cancelled  # Nobody does: withdrawn before it cost anything.
        synth.gate.set()
        await busy
        await source.drain()
        assert synth.calls == ["Busy"]
    finally:
        await scheduler.close(grace=0)


async def test_transcoding_happens_off_the_event_loop_thread(
    parts: tuple[SpeechSource, Synth, AudioCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _, _ = parts
    threads: list[int] = []
    real = audio.to_ogg_opus

    def spy(value: Audio) -> Audio:
        threads.append(threading.get_ident())
        return real(value)

    monkeypatch.setattr(audio, "to_ogg_opus", spy)
    await say(source, 1, "Where does the work happen?")
    assert threads
    assert threading.get_ident() not in threads
