"""The per-server player and the Opus source, with a VoiceClient spec'd from discord.py's."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import create_autospec

import av
import discord
import pytest

from bot import audio
from bot.errors import AudioError, QueueFullError, ServerError
from bot.playback.player import CONNECTION_LOST, GuildPlayer, Utterance, single_clip
from bot.playback.source import FRAME_SECONDS, OggOpusSource, dave_supported
from tests.signals import tone


def clip(seconds: float, freq: float = 220.0) -> bytes:
    return audio.encode_ogg_opus(tone(seconds, freq=freq))


class FakeVoice:
    """A spec'd VoiceClient: `play` drains the source in the background, then calls `after`,
    as discord.py's player thread does; `stop` ends the current source early."""

    def __init__(self, *, packet_delay: float = 0.0) -> None:
        self.client = create_autospec(discord.VoiceClient, instance=True)
        self.client.is_connected.return_value = True
        self.client.play.side_effect = self._play
        self.client.stop.side_effect = self._stop
        self.played: list[OggOpusSource] = []
        self.packets_sent = 0
        self._after: Any = None
        self._stopped = asyncio.Event()
        self._delay = packet_delay

    def _play(self, source: OggOpusSource, *, after: Any = None) -> None:
        assert self._after is None, "play() while already playing"
        assert source.is_opus()
        self.played.append(source)
        self._after = after
        self._stopped.clear()
        asyncio.get_running_loop().create_task(self._drain(source))

    async def _drain(self, source: OggOpusSource) -> None:
        while not self._stopped.is_set() and source.read():
            self.packets_sent += 1
            await asyncio.sleep(self._delay)
        after, self._after = self._after, None
        if after is not None:
            after(None)

    def _stop(self) -> None:
        self._stopped.set()


async def _eventually(predicate: Any, within: float = 5.0) -> None:
    """Poll a condition the player reaches on its own task (no event to wait on)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def test_ogg_opus_source_yields_20ms_frames_covering_the_clip() -> None:
    for seconds in (0.02, 0.5, 1.234, 7.0):
        data = clip(seconds)
        source = OggOpusSource(data)
        packets = []
        while packet := source.read():
            packets.append(packet)
        assert source.read() == b""  # Stays ended.
        # Opus pre-skip (312 samples at 48 kHz) is carried in the first frames.
        expected = math.ceil((seconds * 48_000 + 312) / 960)
        assert len(packets) == expected
        assert source.duration == pytest.approx(len(packets) * FRAME_SECONDS)
        decoder = av.CodecContext.create("libopus", "r")
        for packet in packets:
            frames = decoder.decode(av.Packet(packet))
            assert sum(frame.samples for frame in frames) == 960  # 20 ms at 48 kHz.


def test_ogg_opus_source_refuses_other_audio() -> None:
    with pytest.raises(AudioError):
        OggOpusSource(audio.encode_wav(tone(0.5)))
    with pytest.raises(AudioError):
        OggOpusSource(b"OggS" + b"\0" * 40)


def test_voice_encryption_is_available() -> None:
    assert dave_supported()


async def test_queue_plays_in_order_and_counts() -> None:
    voice = FakeVoice()
    player = GuildPlayer(1, voice.client, idle_timeout=5)
    clips = [clip(0.1, freq) for freq in (200.0, 300.0, 400.0)]
    for n, data in enumerate(clips):
        player.enqueue(single_clip(f"clip {n}", user_id=n, clip=data))
    await _eventually(lambda: player.played == 3)
    assert [s.packet_count for s in voice.played] == [OggOpusSource(c).packet_count for c in clips]
    assert voice.packets_sent == sum(OggOpusSource(c).packet_count for c in clips)
    await player.close()


async def test_skip_stops_only_the_current_utterance_and_its_later_chunks() -> None:
    voice = FakeVoice(packet_delay=0.002)
    player = GuildPlayer(1, voice.client, idle_timeout=5)
    produced: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for n in range(5):
            produced.append(n)
            yield clip(1.0)

    long = Utterance(label="long", user_id=1, clips=chunks())
    player.enqueue(long)
    player.enqueue(single_clip("next", 2, clip(0.1)))
    await _eventually(lambda: len(voice.played) == 1)
    assert player.skip()
    await _eventually(lambda: player.played == 1)
    assert len(voice.played) == 2  # The skipped message's other chunks were never played.
    assert produced == [0]  # ...nor even made.
    assert not player.skip()  # Nothing playing now.
    await player.close()


async def test_stop_clears_the_queue_and_cancels_pending_synthesis() -> None:
    voice = FakeVoice(packet_delay=0.002)
    player = GuildPlayer(1, voice.client, idle_timeout=5)
    closed: list[str] = []

    def pending(name: str) -> Utterance:
        async def gen() -> AsyncIterator[bytes]:
            yield clip(1.0)

        return Utterance(label=name, user_id=1, clips=gen(), on_close=lambda: closed.append(name))

    for name in ("a", "b", "c"):
        player.enqueue(pending(name))
    await _eventually(lambda: len(voice.played) == 1)
    assert await player.stop() == 2
    await _eventually(lambda: player.current is None)
    assert sorted(closed) == ["a", "b", "c"]
    assert player.queue == []
    assert len(voice.played) == 1
    await player.close()


async def test_long_text_starts_playing_before_the_rest_is_made() -> None:
    voice = FakeVoice()
    player = GuildPlayer(1, voice.client, idle_timeout=5)
    second_ready = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield clip(0.1)
        await second_ready.wait()  # Still being synthesised...
        yield clip(0.1)

    player.enqueue(Utterance(label="long", user_id=1, clips=chunks()))
    await _eventually(lambda: voice.packets_sent > 0)
    assert len(voice.played) == 1  # Chunk 1 is already audible.
    second_ready.set()
    await _eventually(lambda: player.played == 1)
    assert len(voice.played) == 2
    await player.close()


async def test_idle_player_asks_to_leave() -> None:
    voice = FakeVoice()
    left: list[GuildPlayer] = []

    async def on_idle(player: GuildPlayer) -> None:
        left.append(player)

    player = GuildPlayer(1, voice.client, idle_timeout=0.05, on_idle=on_idle)
    player.enqueue(single_clip("hi", 1, clip(0.05)))
    await _eventually(lambda: left == [player])
    assert player.played == 1
    assert player.closed


class Told:
    """Utterances that record being closed and what their member was told."""

    def __init__(self) -> None:
        self.closed: list[str] = []
        self.lines: dict[str, list[str]] = {}

    def utterance(self, name: str, *clips: bytes | BaseException) -> Utterance:
        async def gen() -> AsyncIterator[bytes]:
            for item in clips:
                if isinstance(item, BaseException):
                    raise item
                yield item

        async def notify(line: str) -> None:
            self.lines.setdefault(name, []).append(line)

        return Utterance(
            label=name,
            user_id=1,
            clips=gen(),
            on_close=lambda: self.closed.append(name),
            notify=notify,
        )


async def test_a_reconnect_is_waited_out_and_every_queued_message_plays() -> None:
    # A voice server change or resume: is_connected() is False for a round trip or several
    # while the bot still sits in the channel.
    voice = FakeVoice()
    voice.client.is_connected.return_value = False
    player = GuildPlayer(1, voice.client, idle_timeout=5, reconnect_timeout=10)
    told = Told()
    player.enqueue(told.utterance("one", clip(0.1)))
    player.enqueue(told.utterance("two", clip(0.1)))
    await asyncio.sleep(0.3)
    assert voice.played == []
    assert not player.closed
    voice.client.is_connected.return_value = True
    await _eventually(lambda: player.played == 2)
    assert told.lines == {}
    assert not player.closed
    await player.close()


async def test_a_connection_that_never_returns_closes_the_queue_and_tells_each_member() -> None:
    voice = FakeVoice(packet_delay=0.002)
    gone: list[GuildPlayer] = []

    async def on_gone(player: GuildPlayer) -> None:
        gone.append(player)

    player = GuildPlayer(1, voice.client, idle_timeout=5, reconnect_timeout=0.2, on_gone=on_gone)
    told = Told()
    player.enqueue(told.utterance("one", clip(0.3)))
    player.enqueue(told.utterance("two", clip(0.3)))
    player.enqueue(told.utterance("three", clip(0.3)))
    await _eventually(lambda: len(voice.played) == 1)
    voice.client.is_connected.return_value = False
    await _eventually(lambda: player.closed)
    assert len(voice.played) == 1
    assert gone == [player]
    # Each waiting message was withdrawn (its unpaid calls too) and its member told.
    assert sorted(told.closed) == ["one", "three", "two"]
    assert set(told.lines) == {"two", "three"}
    assert all(CONNECTION_LOST in lines[0] for lines in told.lines.values())


async def test_a_later_chunk_failing_is_reported_to_its_member() -> None:
    voice = FakeVoice()
    player = GuildPlayer(1, voice.client, idle_timeout=5)
    told = Told()
    player.enqueue(told.utterance("long", clip(0.1), ServerError(status=502)))
    player.enqueue(told.utterance("next", clip(0.1)))
    await _eventually(lambda: player.played == 1 and "long" in told.lines)
    (line,) = told.lines["long"]
    assert line.startswith("⚠️ Part 2 of your message could not be made")
    assert len(voice.played) == 2
    await player.close()


async def test_play_refused_after_a_disconnect_is_survived() -> None:
    voice = FakeVoice()
    voice.client.play.side_effect = discord.ClientException("Not connected to voice.")
    player = GuildPlayer(1, voice.client, idle_timeout=5)
    player.enqueue(single_clip("one", 1, clip(0.1)))
    await _eventually(lambda: player.current is None and not player.queue)
    assert not player.closed  # Still able to play once the connection is back.
    await player.close()


async def test_synthesis_failure_is_reported_and_the_queue_goes_on() -> None:
    voice = FakeVoice()
    failures: list[tuple[str, str]] = []

    async def on_error(utterance: Utterance, error: Exception) -> None:
        failures.append((utterance.label, type(error).__name__))

    async def broken() -> AsyncIterator[bytes]:
        if voice.client.is_connected():
            raise ServerError(status=502)
        yield b""

    player = GuildPlayer(1, voice.client, idle_timeout=5, on_error=on_error)
    player.enqueue(Utterance(label="bad", user_id=1, clips=broken()))
    player.enqueue(single_clip("good", 1, clip(0.1)))
    await _eventually(lambda: player.played == 1)
    assert failures == [("bad", "ServerError")]
    await player.close()


async def test_queue_is_bounded() -> None:
    voice = FakeVoice(packet_delay=0.01)
    player = GuildPlayer(1, voice.client, idle_timeout=5, max_queue=2)
    player.enqueue(single_clip("a", 1, clip(1.0)))
    await _eventually(lambda: player.current is not None)
    player.enqueue(single_clip("b", 1, clip(0.1)))
    player.enqueue(single_clip("c", 1, clip(0.1)))
    with pytest.raises(QueueFullError):
        player.enqueue(single_clip("d", 1, clip(0.1)))
    await player.close()
