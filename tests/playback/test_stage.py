"""The player in a Stage's audience: nothing made or played for nobody, everything heard from
its start once the bot is invited, and nothing waiting for ever."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from bot.errors import QueueFullError
from bot.playback.player import GuildPlayer, Utterance
from bot.playback.source import OggOpusSource
from tests.playback.test_player import FakeVoice, _eventually, clip


class Held:
    """Utterances held unmade: each records when its calls were queued (`start`), what was
    made of it, whether it was closed, and what its member was told."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.made: list[str] = []
        self.closed: list[str] = []
        self.told: dict[str, list[str]] = {}

    def utterance(self, name: str, *seconds: float, refuse: bool = False) -> Utterance:
        async def start() -> None:
            if refuse:
                raise QueueFullError(per_user=False, limit=1)
            self.started.append(name)

        async def clips() -> AsyncIterator[bytes]:
            for n, length in enumerate(seconds):
                self.made.append(f"{name}{n}")
                yield clip(length)

        async def notify(line: str) -> None:
            self.told.setdefault(name, []).append(line)

        return Utterance(
            label=name,
            user_id=1,
            clips=clips(),
            on_close=lambda: self.closed.append(name),
            notify=notify,
            start=start,
        )


async def test_in_the_audience_nothing_is_made_or_played_until_the_bot_is_invited() -> None:
    voice = FakeVoice()
    player = GuildPlayer(1, voice.client, idle_timeout=5, stage_wait=30)
    held = Held()
    player.hold()
    player.enqueue(held.utterance("one", 0.2, 0.2))
    player.enqueue(held.utterance("two", 0.1))
    await asyncio.sleep(0.3)
    assert (held.started, held.made, voice.played) == ([], [], [])
    assert player.held

    player.release()  # A moderator invited the bot to speak.
    await _eventually(lambda: player.played == 2)
    assert held.started == ["one", "two"]
    assert held.made == ["one0", "one1", "two0"]
    # Every clip heard from its start: whole sources, one play each.
    assert [s.packet_count for s in voice.played] == [
        OggOpusSource(c).packet_count for c in (clip(0.2), clip(0.2), clip(0.1))
    ]
    assert voice.packets_sent == sum(s.packet_count for s in voice.played)
    assert held.told == {}
    await player.close()


async def test_messages_not_invited_within_the_wait_are_given_up_and_their_members_told() -> None:
    voice = FakeVoice()
    player = GuildPlayer(1, voice.client, idle_timeout=5, stage_wait=1.0)
    held = Held()
    player.hold()
    player.enqueue(held.utterance("one", 0.1))
    player.enqueue(held.utterance("two", 0.1))
    await _eventually(lambda: len(held.told) == 2)
    line = (
        "⚠️ No stage moderator invited me to speak within 1 second, so your message was not played."
    )
    assert held.told == {"one": [line], "two": [line]}
    assert sorted(held.closed) == ["one", "two"]  # Unmade calls withdrawn.
    assert held.started == []
    assert held.made == []
    assert player.queue == []
    player.release()  # Invited too late: nothing is left to make or play.
    await asyncio.sleep(0.1)
    assert (held.started, voice.played) == ([], [])
    assert not player.closed  # Still on the Stage, for the next message.
    await player.close()


async def test_each_message_waits_from_when_it_was_queued_in_the_audience() -> None:
    voice = FakeVoice()
    player = GuildPlayer(1, voice.client, idle_timeout=5, stage_wait=0.4)
    held = Held()
    player.hold()
    player.enqueue(held.utterance("early", 0.1))
    await asyncio.sleep(0.25)
    player.enqueue(held.utterance("late", 0.1))
    await _eventually(lambda: "early" in held.told)
    assert "late" not in held.told  # Its own wait is not over yet.
    player.release()
    await _eventually(lambda: player.played == 1)
    assert held.started == ["late"]
    await player.close()


async def test_a_clip_cut_off_by_going_to_the_audience_plays_again_from_its_start() -> None:
    voice = FakeVoice(packet_delay=0.002)
    player = GuildPlayer(1, voice.client, idle_timeout=5, stage_wait=30)
    held = Held()
    player.enqueue(held.utterance("speech", 1.0, 0.1))
    await _eventually(lambda: voice.packets_sent > 5)
    player.hold()  # A moderator moved the bot to the audience mid-sentence.
    await asyncio.sleep(0.2)
    cut = voice.packets_sent
    assert len(voice.played) == 1
    assert cut < voice.played[0].packet_count
    player.release()
    await _eventually(lambda: player.played == 1)
    whole, second = OggOpusSource(clip(1.0)).packet_count, OggOpusSource(clip(0.1)).packet_count
    # The cut clip again, whole, then the next one.
    assert [s.packet_count for s in voice.played] == [whole, whole, second]
    assert voice.packets_sent == cut + whole + second
    await player.close()


async def test_a_message_refused_when_its_calls_are_finally_queued_is_told_and_skipped() -> None:
    voice = FakeVoice()
    player = GuildPlayer(1, voice.client, idle_timeout=5, stage_wait=30)
    held = Held()
    player.hold()
    player.enqueue(held.utterance("refused", 0.1, refuse=True))
    player.enqueue(held.utterance("fine", 0.1))
    player.release()
    await _eventually(lambda: player.played == 1)
    assert held.started == ["fine"]
    assert held.made == ["fine0"]
    assert held.told["refused"][0].startswith("⚠️ ")
    assert "refused" in held.closed
    await player.close()


async def test_a_skip_in_the_audience_gives_the_held_message_up_at_once() -> None:
    voice = FakeVoice(packet_delay=0.002)
    player = GuildPlayer(1, voice.client, idle_timeout=5, stage_wait=30)
    held = Held()
    player.enqueue(held.utterance("long", 1.0, 1.0))
    await _eventually(lambda: voice.packets_sent > 0)
    player.hold()
    await asyncio.sleep(0.05)
    assert player.skip()
    await _eventually(lambda: "long" in held.closed)
    assert player.current is None
    await player.close()


async def test_outside_a_stage_a_message_accepted_unmade_is_started_at_once() -> None:
    voice = FakeVoice()
    player = GuildPlayer(1, voice.client, idle_timeout=5)
    held = Held()
    player.enqueue(held.utterance("one", 0.1))
    await _eventually(lambda: player.played == 1)
    assert held.started == ["one"]
    await player.close()
