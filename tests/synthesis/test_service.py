"""The speech service: chunked requests through the real scheduler, joined or streamed."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import create_autospec

import pytest

from bot import audio
from bot.audio import Audio
from bot.config import Settings
from bot.errors import AccessDeniedError, CooldownError, QuotaExceededError
from bot.speech.access import Caller, Requester
from bot.speech.request import SpeechRequest, build_request
from bot.speech.voices import voice_for_user
from bot.storage import SQLiteStorage, UsageRecord
from bot.synthesis.scheduler import Scheduler, SchedulerConfig
from bot.synthesis.service import Destination, SpeakOptions, SpeechService, clip_filename
from bot.synthesis.stream import SpeechStream
from tests.signals import tone

SENTENCE = "This sentence is here to make the text long enough to need several chunks. "


def distinct(n: int) -> str:
    """Long text whose chunks all differ (identical chunks would share one call)."""
    return "".join(f"Sentence number {i} makes the text long enough for chunks. " for i in range(n))


class Synth:
    """Returns audio whose length encodes which chunk it was; records concurrency."""

    def __init__(self, latency: float = 0.02) -> None:
        self.latency = latency
        self.texts: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self, request: SpeechRequest) -> Audio:
        self.texts.append(request.text)
        index = len(self.texts)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(self.latency)
            seconds = 0.1 * index
            return audio.probe(audio.encode_wav(tone(seconds)), audio.AudioFormat.WAV)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def service(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[Any, Synth]]:
    synth = Synth()
    scheduler = Scheduler(
        synth, SchedulerConfig(rpm=1000, user_cooldown=30, max_waiting_per_user=1)
    )
    scheduler.start()
    settings = make_settings(chunk_chars=200, first_chunk_chars=80, chunk_parallelism=2)
    yield SpeechService(settings, scheduler), synth
    await scheduler.close(grace=0)


async def test_short_text_is_one_request(service: tuple[Any, Synth]) -> None:
    speech, _ = service
    (request,) = speech.prepare_chunks("Hello!", voice="kore", style="cheerful")
    assert request == build_request("Hello!", voice="kore", style="cheerful")


async def test_long_text_is_split_with_a_short_first_chunk_and_the_style_on_each(
    service: tuple[Any, Synth],
) -> None:
    speech, _ = service
    text = SENTENCE * 8
    requests = speech.prepare_chunks(text, voice="Puck", style="calm", first_max=80)
    assert len(requests) > 2
    assert all(r.voice == "Puck" for r in requests)
    assert all(r.text.startswith("Say calmly and slowly: ") for r in requests)
    bodies = [r.text.removeprefix("Say calmly and slowly: ") for r in requests]
    assert len(bodies[0]) <= 80
    assert all(len(body) <= 200 for body in bodies)
    assert "".join(bodies).replace(" ", "") == text.replace(" ", "")


async def test_validation_applies_to_the_whole_text_before_splitting(
    service: tuple[Any, Synth],
) -> None:
    speech, synth = service
    with pytest.raises(Exception, match="limit is 2,000"):
        speech.prepare_chunks(SENTENCE * 40)
    assert synth.texts == []


async def test_stream_yields_in_order_with_bounded_parallelism(
    service: tuple[Any, Synth],
) -> None:
    speech, synth = service
    requests = speech.prepare_chunks(distinct(12))
    stream = await speech.stream(
        Requester(1), requests
    )  # Cooldown and cap of 1 do not stop later chunks.
    audios = await stream.collect()
    assert [round(a.duration, 1) for a in audios] == [
        round(0.1 * n, 1) for n in range(1, len(requests) + 1)
    ]
    assert synth.texts == [r.text for r in requests]
    assert synth.max_in_flight == 2
    # The member's next message is still subject to their cooldown.
    with pytest.raises(Exception, match="cooldown"):
        await speech.stream(Requester(1), requests)


async def test_cancelling_a_stream_withdraws_what_has_not_started(
    service: tuple[Any, Synth],
) -> None:
    speech, synth = service
    synth.gate = asyncio.Event()
    requests = speech.prepare_chunks(distinct(12))
    stream = await speech.stream(Requester(2), requests)
    chunks = stream.audio()
    first = asyncio.ensure_future(anext(chunks))
    await asyncio.sleep(0.05)
    stream.cancel()
    synth.gate.set()
    await first  # The running chunk is paid for and delivered...
    await chunks.aclose()
    await asyncio.sleep(0.1)
    assert len(synth.texts) <= 2  # ...but nothing beyond the two in flight was made.
    assert all(t.state in ("done", "failed") for t in stream.tickets)


async def test_render_many_joins_chunks_into_one_ogg(service: tuple[Any, Synth]) -> None:
    speech, _ = service
    parts = [audio.probe(audio.encode_wav(tone(s)), audio.AudioFormat.WAV) for s in (0.5, 1.25)]
    request = build_request("Two parts, one file.")
    clip = await speech.render_many(parts, request)
    assert clip.filename == clip_filename(request) == "zephyr-two-parts-one-file.ogg"
    assert audio.decode(clip.data, audio.AudioFormat.OGG).duration == pytest.approx(1.75, abs=0.01)
    assert clip.duration == pytest.approx(1.75, abs=0.01)


# --- member defaults, server rules, quota (with a real SQLite file) -----------------------------


@pytest.fixture
async def stored(
    make_settings: Callable[..., Settings], tmp_path: Any
) -> AsyncIterator[tuple[SpeechService, SQLiteStorage]]:
    storage = SQLiteStorage(tmp_path / "bot.db")
    await storage.connect()
    scheduler = Scheduler(Synth(), SchedulerConfig(rpm=1000))
    yield SpeechService(make_settings(), scheduler, storage=storage), storage
    await storage.close()


async def test_member_defaults_fill_only_what_was_left_out(
    stored: tuple[SpeechService, SQLiteStorage],
) -> None:
    speech, storage = stored
    await storage.update_member(1, voice="Kore", temperature=1.2, style="excited")
    ctx = await speech.context(Caller(1, guild_id=9))
    (request,) = speech.prepare_chunks("hi", ctx=ctx)
    assert (request.voice, request.temperature, request.text) == ("Kore", 1.2, "Say excitedly: hi")
    (chosen,) = speech.prepare_chunks("hi", voice="Puck", temperature=0.0, style="", ctx=ctx)
    assert (chosen.voice, chosen.temperature, chosen.text) == ("Puck", 0.0, "hi")


async def test_a_servers_text_limit_applies(stored: tuple[SpeechService, SQLiteStorage]) -> None:
    speech, storage = stored
    await storage.update_guild(9, max_text_length=10)
    ctx = await speech.context(Caller(1, guild_id=9))
    with pytest.raises(Exception, match="the limit is 10"):
        speech.prepare_chunks("x" * 11, ctx=ctx)


async def test_a_servers_text_limit_cannot_exceed_the_operators(
    stored: tuple[SpeechService, SQLiteStorage],
) -> None:
    speech, storage = stored
    await storage.update_guild(9, max_text_length=20_000)
    ctx = await speech.context(Caller(1, guild_id=9))
    limit = speech.settings.max_text_length
    with pytest.raises(Exception, match=f"the limit is {limit:,}"):
        speech.prepare_chunks("x" * (limit + 1), ctx=ctx)


async def test_allowed_role_and_switches(stored: tuple[SpeechService, SQLiteStorage]) -> None:
    speech, storage = stored
    await storage.update_guild(9, allowed_role_id=555, allow_files=False)
    outsider = await speech.context(Caller(1, guild_id=9))
    with pytest.raises(AccessDeniedError, match="<@&555>"):
        await speech.check(outsider, voice=True, calls=1)
    member = await speech.context(Caller(1, guild_id=9, role_ids=frozenset({555})))
    await speech.check(member, voice=True, calls=1)
    with pytest.raises(AccessDeniedError, match="files in chat"):
        await speech.check(member, voice=False, calls=1)
    manager = await speech.context(Caller(2, guild_id=9, manager=True))
    await speech.check(manager, voice=True, calls=1)  # Managers are never locked out by role.


async def test_daily_quota_counts_todays_paid_calls_in_this_server(
    stored: tuple[SpeechService, SQLiteStorage],
) -> None:
    speech, storage = stored
    await storage.update_guild(9, daily_quota=3)
    now = datetime.now(UTC)

    def record(status: int | None, *, guild: int = 9, cached: bool = False, at: Any = now) -> Any:
        return storage.record_usage(UsageRecord(guild, 1, at, status, 1.0, 2.0, 0.005, cached))

    await record(200)
    await record(200, at=now - timedelta(days=1, hours=1))  # Yesterday: not counted.
    await record(200, guild=8)  # Another server: not counted.
    await record(502)  # Failed call: not paid, not counted.
    await record(200, cached=True)  # From the cache: free, not counted.
    ctx = await speech.context(Caller(1, guild_id=9))
    await speech.check(ctx, voice=True, calls=2)  # 1 used + 2 = 3: allowed.
    with pytest.raises(QuotaExceededError) as info:
        await speech.check(ctx, voice=True, calls=3)
    assert info.value.limit == 3
    reset = datetime.fromtimestamp(info.value.reset_at, UTC)
    assert (reset.hour, reset.minute) == (0, 0)
    assert now < reset <= now + timedelta(days=1)


async def test_context_reuses_server_settings_already_loaded(
    stored: tuple[SpeechService, SQLiteStorage],
) -> None:
    speech, storage = stored
    loaded = await storage.get_guild(9)
    ctx = await speech.context(Caller(1, guild_id=9), guild=loaded)
    assert ctx.guild is loaded
    assert (await speech.context(Caller(1, guild_id=9))).guild == loaded


# -- begin: the one pipeline every way of asking uses ------------------------------------


def queued_by(speech: SpeechService) -> Any:
    """Record what `begin` would queue, instead of queueing it."""
    recorder = create_autospec(speech.stream, return_value=create_autospec(SpeechStream))
    speech.stream = recorder  # type: ignore[method-assign]
    return recorder


async def test_begin_applies_defaults_and_rules_then_queues(
    stored: tuple[SpeechService, SQLiteStorage],
) -> None:
    speech, storage = stored
    recorder = queued_by(speech)
    await storage.update_member(1, voice="Kore", style="excited")
    await storage.update_guild(9, user_cooldown=42.0)
    stream = await speech.begin(Caller(1, guild_id=9), "hi", SpeakOptions(temperature=1.0))
    assert stream is recorder.return_value
    requester, (request,) = recorder.call_args.args
    assert requester == Requester(1, 9, cooldown=42.0)
    assert (request.voice, request.temperature, request.text) == ("Kore", 1.0, "Say excitedly: hi")
    kwargs = recorder.call_args.kwargs
    assert (kwargs["fresh"], kwargs["deadline"]) == (False, None)
    assert kwargs["reservation"].held == 0  # No quota in this server: nothing reserved.
    await speech.begin(Caller(1), "hi", SpeakOptions(fresh=True))  # A DM: operator's cooldown.
    assert recorder.call_args.args[0] == Requester(1, None, cooldown=None)
    kwargs = recorder.call_args.kwargs
    assert (kwargs["fresh"], kwargs["deadline"]) == (True, None)


async def test_begin_in_voice_starts_with_a_short_chunk_and_checks_voice_rules(
    stored: tuple[SpeechService, SQLiteStorage],
) -> None:
    speech, storage = stored
    recorder = queued_by(speech)
    text = SENTENCE * 5  # Over first_chunk_chars (200), under chunk_chars (500).
    await speech.begin(Caller(1, guild_id=9), text, destination=Destination.CHAT)
    (whole,) = recorder.call_args.args[1]  # Chat: one file, one call (under chunk_chars).
    await speech.begin(Caller(1, guild_id=9), text, destination=Destination.VOICE)
    parts = recorder.call_args.args[1]
    assert len(parts) > 1
    assert len(parts[0].text) <= speech.settings.first_chunk_chars
    await storage.update_guild(9, allow_voice=False)
    with pytest.raises(AccessDeniedError, match="voice channels"):
        await speech.begin(Caller(1, guild_id=9), "hi", destination=Destination.VOICE)
    await speech.begin(Caller(1, guild_id=9), "hi", destination=Destination.CHAT)
    assert whole.text == text.strip()


async def test_begin_for_narration_reads_in_the_members_voice_without_cooldown(
    stored: tuple[SpeechService, SQLiteStorage],
) -> None:
    speech, storage = stored
    recorder = queued_by(speech)
    await storage.update_guild(9, user_cooldown=42.0)
    await speech.begin(Caller(5, guild_id=9), "Bob said: hi", destination=Destination.NARRATION)
    requester, (request,) = recorder.call_args.args
    # No cooldown and no per-member waiting cap: every message is read.
    assert requester == Requester(5, 9, cooldown=0.0, capped=False)
    assert request.voice == voice_for_user(5).name
    await storage.update_member(5, voice="Sulafat")
    await speech.begin(Caller(5, guild_id=9), "again", destination=Destination.NARRATION)
    assert recorder.call_args.args[1][0].voice == "Sulafat"


async def test_begin_refuses_before_queueing_anything(
    stored: tuple[SpeechService, SQLiteStorage],
) -> None:
    speech, storage = stored
    recorder = queued_by(speech)
    await storage.update_guild(9, daily_quota=0)
    with pytest.raises(QuotaExceededError):
        await speech.begin(Caller(1, guild_id=9), "hi")
    with pytest.raises(Exception, match="no text to speak"):
        await speech.begin(Caller(1, guild_id=9), "   ")
    recorder.assert_not_called()


async def test_the_servers_dictionary_is_applied_before_the_request_is_made(
    stored: tuple[SpeechService, SQLiteStorage],
) -> None:
    speech, storage = stored
    recorder = queued_by(speech)
    await speech.begin(Caller(1, guild_id=9), "Ask nguyen about k8s")
    assert recorder.call_args.args[1][0].text == "Ask nguyen about k8s"
    await storage.update_guild(9, pronunciations=[("Nguyen", "Nwin"), ("k8s", "kubernetes")])
    for destination in Destination:
        await speech.begin(Caller(1, guild_id=9), "Ask NGUYEN about k8s", destination=destination)
        (request,) = recorder.call_args.args[1]
        assert request.text == "Ask Nwin about kubernetes"  # Also what the cache key hashes.
    await speech.begin(Caller(1, guild_id=8), "Ask nguyen")  # Another server: its own words.
    assert recorder.call_args.args[1][0].text == "Ask nguyen"


async def test_chunks_become_one_voice_message_with_their_whole_length(
    service: tuple[Any, Synth],
) -> None:
    speech, _ = service
    one = audio.probe(audio.encode_wav(tone(0.5)), audio.AudioFormat.WAV)
    two = audio.probe(audio.encode_wav(tone(0.7)), audio.AudioFormat.WAV)
    message = await speech.voice_message([one, two])
    assert message.data.startswith(b"OggS")
    assert message.duration == pytest.approx(1.2, abs=0.03)
    assert len(base64.b64decode(message.waveform)) == 12  # One point per 100 ms.


async def test_narration_that_is_behind_can_ask_for_one_call(
    stored: tuple[SpeechService, SQLiteStorage],
) -> None:
    speech, _ = stored
    recorder = queued_by(speech)
    text = SENTENCE * 5  # Over first_chunk_chars (200), under chunk_chars (500).
    await speech.begin(Caller(1, guild_id=9), text, destination=Destination.NARRATION)
    assert len(recorder.call_args.args[1]) > 1
    await speech.begin(
        Caller(1, guild_id=9), text, destination=Destination.NARRATION, short_first=False
    )
    assert len(recorder.call_args.args[1]) == 1


async def test_a_message_accepted_for_later_takes_its_turn_now_and_is_made_only_on_start(
    service: tuple[Any, Synth],
) -> None:
    """Speech for a Stage's audience: the member's cooldown is checked and started when it is
    accepted; nothing is queued until `start` (then without a second cooldown), and a message
    given up before that is never made."""
    speech, synth = service
    admission = await speech.admit(Caller(1), "Hello up there", destination=Destination.VOICE)
    stream = speech.later(admission)
    await asyncio.sleep(0.05)
    assert synth.texts == []
    assert speech.source.scheduler.queue_snapshot() == []
    with pytest.raises(CooldownError):  # Its cooldown (30 s) started with it.
        speech.later(await speech.admit(Caller(1), "again", destination=Destination.VOICE))
    await stream.start()  # The bot was invited: not refused by the cooldown it took.
    assert [audio.duration async for audio in stream.audio()] == [pytest.approx(0.1, abs=0.03)]
    assert synth.texts == ["Hello up there"]

    other = speech.later(await speech.admit(Caller(2), "never", destination=Destination.VOICE))
    other.cancel()  # Nobody invited the bot in time.
    await other.start()
    await asyncio.sleep(0.05)
    assert synth.texts == ["Hello up there"]
