"""The daily quota counts a call from the moment it is accepted, so no burst can pass it.

The whole pipeline as the bot opens it (`open_services`): a real SQLite file, the real
scheduler, cache and usage recorder, and the fake Segmind server on 127.0.0.1, which counts
the calls actually made.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bot.config import Settings
from bot.errors import BotError, QuotaExceededError, StorageError
from bot.services import Services, open_services
from bot.speech.access import Caller
from bot.synthesis.quota import QuotaLedger, Reservation
from bot.synthesis.service import Destination, SpeechService
from bot.synthesis.stream import SpeechStream
from bot.synthesis.usage import day_start, paid_calls
from tests import fake_segmind as fs
from tests.conftest import TEST_API_KEY

GUILD = 77
ALICE = 1001


@dataclass
class Bot:
    services: Services
    segmind: fs.FakeSegmind

    @property
    def speech(self) -> SpeechService:
        return self.services.speech

    async def set_quota(self, quota: int | None, **rules: Any) -> None:
        await self.services.storage.update_guild(GUILD, daily_quota=quota, **rules)

    async def begin(
        self, text: str, user: int = ALICE, destination: Destination = Destination.NARRATION
    ) -> SpeechStream:
        return await self.speech.begin(Caller(user, GUILD), text, destination=destination)

    async def burst(self, texts: list[str], user: int = ALICE) -> list[SpeechStream]:
        """Ask for every text at once; the streams admitted (the rest must be refused for the
        quota), each made to the end."""
        outcomes = await asyncio.gather(
            *(self.begin(text, user) for text in texts), return_exceptions=True
        )
        streams = [o for o in outcomes if isinstance(o, SpeechStream)]
        refused = [o for o in outcomes if not isinstance(o, SpeechStream)]
        assert all(isinstance(o, QuotaExceededError) for o in refused), refused
        for stream in streams:
            await stream.collect()
        return streams

    async def settle(self) -> None:
        """Wait until every call has ended and every usage record is written."""
        await self.speech.source.drain()  # Each call's own task ends when its ticket does.
        await self.services.usage.drain()

    async def paid_today(self, user: int = ALICE) -> int:
        usage = await self.services.storage.usage(since=day_start(), guild_id=GUILD, user_id=user)
        return paid_calls(usage)

    def calls_made(self, marker: str) -> int:
        """Successful calls the server answered for texts containing `marker`."""
        return sum(
            1
            for r in self.segmind.requests
            if r.status == 200 and marker in str((r.json_body or {}).get("text"))
        )

    def outstanding(self, user: int = ALICE) -> int:
        return self.speech.quota.outstanding(GUILD, user)


@pytest.fixture
async def bot(make_settings: Callable[..., Settings]) -> AsyncIterator[Bot]:
    async with fs.FakeSegmind(api_key=TEST_API_KEY, latency=0.2) as segmind:
        settings = make_settings(
            segmind_base_url=segmind.base_url,
            segmind_rpm=1000,
            user_cooldown=0,
            max_waiting_per_user=10,
            backoff_base=0.01,
            chunk_chars=60,
            first_chunk_chars=30,
            cache_disk_mb=0,
        )
        services = await open_services(settings)
        try:
            yield Bot(services, segmind)
        finally:
            await services.close()


def texts(marker: str, n: int) -> list[str]:
    return [f"{marker} message number {i}." for i in range(n)]


async def test_messages_arriving_together_are_admitted_only_up_to_the_quota(bot: Bot) -> None:
    await bot.set_quota(3)
    outcomes = await asyncio.gather(
        *(bot.begin(text) for text in texts("burst", 8)), return_exceptions=True
    )
    streams = [o for o in outcomes if isinstance(o, SpeechStream)]
    refused = [o for o in outcomes if isinstance(o, QuotaExceededError)]
    assert (len(streams), len(refused)) == (3, 5)
    assert all(
        o.user_message.startswith("You've used your 3 requests for today in this server")
        for o in refused
    )
    for stream in streams:
        await stream.collect()
    await bot.settle()
    assert bot.segmind.successes == 3
    assert await bot.paid_today() == 3
    assert bot.outstanding() == 0
    assert len(bot.speech.quota) == 0  # Nothing kept for a member with nothing outstanding.


async def test_speak_spaced_past_the_cooldown_cannot_pass_the_quota(bot: Bot) -> None:
    await bot.set_quota(3, user_cooldown=0.05)
    streams = []
    for text in texts("spaced", 3):
        streams.append(await bot.begin(text, destination=Destination.CHAT))
        await asyncio.sleep(0.06)  # Past the cooldown, long before the first call ends.
    with pytest.raises(QuotaExceededError):
        await bot.begin("spaced one too many", destination=Destination.CHAT)
    for stream in streams:
        await stream.collect()
    await bot.settle()
    assert bot.segmind.successes == 3


async def test_calls_that_cost_nothing_give_their_place_in_the_quota_back(bot: Bot) -> None:
    await bot.set_quota(3)
    bot.segmind.enqueue(fs.status(400, "bad request"))
    with pytest.raises(BotError):
        await (await bot.begin("free This call fails.")).collect()
    bot.segmind.enqueue(fs.status(503))  # Fails once, then is retried: one paid call.
    await (await bot.begin("free Hello there.")).collect()
    await (await bot.begin("free Hello there.")).collect()  # From the cache.
    together = await asyncio.gather(bot.begin("free Together."), bot.begin("free Together."))
    for stream in together:  # One call for both: the second joined the first.
        await stream.collect()
    await bot.settle()
    assert await bot.paid_today() == bot.calls_made("free") == 2
    assert bot.outstanding() == 0
    # Exactly what is left of the quota can be asked for now, however it is asked.
    assert len(await bot.burst(texts("rest", 4))) == 1
    await bot.settle()
    assert await bot.paid_today() == 3


async def test_a_cancelled_message_gives_back_the_calls_it_never_made(bot: Bot) -> None:
    long = " ".join(f"Sentence {i} of a long message." for i in range(6))
    total = len(bot.speech.prepare_chunks(long, first_max=bot.speech.settings.first_chunk_chars))
    assert total >= 4
    await bot.set_quota(total)
    bot.segmind.enqueue(fs.delay(0), fs.delay(1.0))  # The second chunk's call takes long.
    stream = await bot.begin(long)
    assert (stream.total, bot.outstanding()) == (total, total)
    audios = stream.audio()
    await anext(audios)  # The first chunk is here; the second was asked for behind it.
    stream.cancel()
    await bot.services.usage.drain()
    # The first chunk is paid and stored. The second's call is running and will be paid: it
    # stays counted until it ends. The chunks never asked for are given back at once.
    assert await bot.paid_today() == 1
    assert bot.outstanding() == 1
    await bot.settle()
    assert await bot.paid_today() == bot.segmind.successes == 2
    assert bot.outstanding() == 0
    assert len(await bot.burst(texts("after", total))) == total - 2


async def test_a_paid_call_still_being_recorded_counts_against_the_quota(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    await bot.set_quota(1)
    storage = bot.services.storage
    written = storage.record_usage
    slow = asyncio.Event()

    async def record_usage(record: Any) -> None:
        await slow.wait()  # The database is busy: the record is written late.
        await written(record)

    monkeypatch.setattr(storage, "record_usage", record_usage)
    await (await bot.begin("recorded late")).collect()  # Made, paid, not yet in storage.
    asking = asyncio.create_task(bot.begin("one more"))
    await asyncio.sleep(0.1)
    slow.set()
    with pytest.raises(QuotaExceededError):
        await asking
    await bot.settle()
    assert await bot.paid_today() == 1
    assert bot.outstanding() == 0
    with pytest.raises(QuotaExceededError):
        await bot.begin("one more")
    assert bot.segmind.successes == 1


async def test_a_check_reading_storage_while_a_paid_call_is_recorded_still_counts_it(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    await bot.set_quota(1)
    bot.segmind.latency = 0.05
    storage = bot.services.storage
    read = storage.usage

    async def usage(**filters: Any) -> Any:
        summary = await read(**filters)
        await asyncio.sleep(0.3)  # The answer is slow to come back: the call ends meanwhile.
        return summary

    first = await bot.begin("first")
    monkeypatch.setattr(storage, "usage", usage)
    with pytest.raises(QuotaExceededError):
        await bot.begin("second")
    await first.collect()
    await bot.settle()
    assert bot.segmind.successes == 1


async def test_a_paid_call_counts_once_while_its_audio_is_being_prepared(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    await bot.set_quota(2)
    source = bot.speech.source
    prepare = source.normalize
    ready = asyncio.Event()

    async def normalize(audio: Any) -> Any:
        await ready.wait()  # Transcoding takes a while after the call was paid.
        return await prepare(audio)

    monkeypatch.setattr(source, "normalize", normalize)
    first = await bot.begin("first")
    ticket = first.current
    assert ticket is not None
    try:
        paid = asyncio.Event()  # Its audio is taken by its reader: watch it end instead.
        ticket.when_done(lambda _: paid.set())
        await asyncio.wait_for(paid.wait(), 5)  # Paid; its audio is not ready yet.
        assert bot.outstanding() <= 1  # Counted as paid, no longer as a reservation too.
        second = await bot.begin("second")  # 1 paid + 1 = 2: allowed.
    finally:
        ready.set()
    await first.collect()
    await second.collect()
    await bot.settle()
    assert bot.segmind.successes == 2


async def test_an_admission_not_started_gives_its_calls_back(bot: Bot) -> None:
    await bot.set_quota(2)
    admission = await bot.speech.admit(Caller(ALICE, GUILD), "never started")
    assert bot.outstanding() == 1
    admission.release()
    admission.release()  # Harmless twice.
    assert bot.outstanding() == 0
    started = await bot.speech.admit(Caller(ALICE, GUILD), "started")
    stream = await bot.speech.start(started)
    started.release()  # After start the stream has it: nothing changes.
    assert bot.outstanding() == 1
    with pytest.raises(RuntimeError):
        await bot.speech.start(started)  # Once only: a second start would be uncounted.
    await stream.collect()
    await bot.settle()
    assert bot.outstanding() == 0


async def test_a_message_held_for_later_counts_until_it_is_made_or_withdrawn(bot: Bot) -> None:
    await bot.set_quota(2)
    held = bot.speech.later(await bot.speech.admit(Caller(ALICE, GUILD), "held on a Stage"))
    assert bot.outstanding() == 1  # Counted while it waits for the bot to be invited.
    withdrawn = bot.speech.later(await bot.speech.admit(Caller(ALICE, GUILD), "never invited"))
    with pytest.raises(BotError, match="quota"):
        await bot.speech.admit(Caller(ALICE, GUILD), "one too many")
    withdrawn.cancel()  # The wait ran out: nothing was made, nothing stays counted.
    assert bot.outstanding() == 1
    await (await held.start()).collect()
    await bot.settle()
    assert bot.outstanding() == 0
    assert await bot.paid_today() == 1


async def test_a_request_refused_when_it_starts_gives_its_calls_back(bot: Bot) -> None:
    await bot.set_quota(4, user_cooldown=30)
    await (await bot.begin("first", destination=Destination.CHAT)).collect()
    long = " ".join(f"Sentence {i} of a long message to read." for i in range(3))
    with pytest.raises(BotError, match="cooldown"):
        await bot.begin(long, destination=Destination.VOICE)
    assert bot.outstanding() == 0
    await bot.settle()
    assert len(await bot.burst(texts("narrated", 5))) == 3


async def test_managers_and_servers_without_a_quota_reserve_nothing(bot: Bot) -> None:
    stream = await bot.begin("no quota here")
    assert bot.outstanding() == 0
    await bot.set_quota(0)
    manager = await bot.speech.begin(
        Caller(ALICE, GUILD, manager=True), "managers are exempt", destination=Destination.CHAT
    )
    assert bot.outstanding() == 0
    await stream.collect()
    await manager.collect()


async def test_no_mix_of_outcomes_passes_the_quota_or_leaks_a_reservation(bot: Bot) -> None:
    """Property-style: random bursts mixing every way a call can end, per round a new member
    with a new quota; calls made never exceed it, and afterwards nothing is left reserved and
    exactly what is left of the quota can still be asked for."""
    bot.segmind.latency = 0.1
    await bot.set_quota(None)
    for seed in range(10):
        rng = random.Random(seed)
        user = 2000 + seed
        marker = f"round{seed}"
        quota = rng.randint(3, 8)
        await bot.set_quota(quota, user_cooldown=30)
        await (await bot.begin(f"{marker} cached words", user)).collect()  # For cache hits.
        await bot.settle()
        kinds = rng.choices(
            ["new", "cached", "shared", "fail", "withdraw", "cancel-running", "refused", "drop"],
            k=10,
        )
        for kind in kinds:
            if kind == "fail":
                bot.segmind.enqueue(fs.status(400))
        tasks = [
            asyncio.create_task(
                _one(bot, kind, user, f"{marker} {kind} {i}", marker, rng.uniform(0, 0.15))
            )
            for i, kind in enumerate(kinds)
        ]
        while not all(task.done() for task in tasks):
            assert bot.calls_made(marker) <= quota
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)
        await bot.settle()
        await _use_up_faults(bot, seed)
        await bot.settle()
        made = bot.calls_made(marker)
        assert await bot.paid_today(user) == made <= quota
        assert bot.outstanding(user) == 0
        rest = await bot.burst(texts(f"{marker} rest", quota + 2), user)
        assert len(rest) == quota - made
        await bot.settle()
        assert bot.calls_made(marker) == quota
    assert len(bot.speech.quota) == 0


async def _use_up_faults(bot: Bot, seed: int) -> None:
    """Faults no request of the round reached would hit the next round's: a manager (exempt
    from the quota) takes them."""
    n = 0
    while bot.segmind.pending_faults:
        n += 1
        manager = Caller(9, GUILD, manager=True)
        stream = await bot.speech.begin(manager, f"left over {seed} {n}")
        with contextlib.suppress(BotError):
            await stream.collect()


async def _one(bot: Bot, kind: str, user: int, text: str, marker: str, wait: float) -> None:
    """One request of the mix, ending the way `kind` says (refusals are expected); `wait` is
    how long a cancelled one runs first."""
    try:
        if kind == "cached":
            stream = await bot.begin(f"{marker} cached words", user)
        elif kind == "shared":
            stream = await bot.begin(f"{marker} shared words", user)
        elif kind == "refused":
            # A /speak, a second one refused by the member's cooldown when it starts.
            stream = await bot.begin(text, user, destination=Destination.CHAT)
        elif kind == "drop":
            admission = await bot.speech.admit(Caller(user, GUILD), text)
            await asyncio.sleep(wait)
            admission.release()  # Admitted, then not started after all.
            return
        else:
            stream = await bot.begin(text, user)
        if kind == "withdraw":
            stream.cancel()  # Still queued: withdrawn before its call.
            return
        if kind == "cancel-running":
            await asyncio.sleep(wait)
            stream.cancel()  # Queued: withdrawn; running: it runs on and is paid.
            return
        await stream.collect()
    except BotError:
        pass


def test_the_ledger_forgets_a_member_at_zero_and_gives_back_no_more_than_it_holds() -> None:
    ledger = QuotaLedger()
    reservation = ledger.reserve(GUILD, ALICE, 3)
    ledger.paid(GUILD, ALICE)
    assert ledger.outstanding(GUILD, ALICE) == 4
    reservation.release()
    reservation.release(5)  # Only the 2 it still holds.
    reservation.release()
    assert (reservation.held, ledger.outstanding(GUILD, ALICE)) == (0, 1)
    assert len(ledger) == 1
    ledger.give_back((GUILD, ALICE), 1)
    assert len(ledger) == 0
    free = Reservation()
    free.release()
    free.take()
    free.abandon()
    assert (free.held, len(ledger)) == (0, 0)


async def test_a_paid_call_whose_record_could_not_be_written_yet_stays_counted() -> None:
    ledger = QuotaLedger()
    ledger.paid(GUILD, ALICE)
    with pytest.raises(StorageError):
        async with ledger.writing(GUILD, ALICE):
            raise StorageError("PostgreSQL is restarting")
    assert ledger.outstanding(GUILD, ALICE) == 1  # Held for another try: still counted.
    async with ledger.writing(GUILD, ALICE):
        pass
    assert len(ledger) == 0
