"""The bot's guard around DAVE: a clip waits for the bot's MLS group (bounded), and a failure
of davey inside discord.py's voice websocket is recovered from instead of killing its reader.
The end-to-end proofs, against the emulated DAVE voice server, are in tests/e2e."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from bot.playback import dave
from bot.playback.dave import DaveVoiceWebSocket, dave_ready, wait_for_dave


def voice(version: int, ready: bool) -> SimpleNamespace:
    return SimpleNamespace(
        _connection=SimpleNamespace(dave_protocol_version=version, can_encrypt=ready)
    )


def test_a_call_without_dave_or_a_session_in_its_group_is_ready() -> None:
    assert dave_ready(voice(0, False))
    assert dave_ready(voice(1, True))
    assert not dave_ready(voice(1, False))
    assert dave_ready(object())  # Not discord.py's client: nothing to wait for.


async def test_a_clip_waits_until_the_bot_is_in_the_group() -> None:
    waiting = voice(1, False)

    async def joins() -> None:
        await asyncio.sleep(0.05)
        waiting._connection.can_encrypt = True

    task = asyncio.create_task(joins())
    assert await wait_for_dave(waiting, 1, within=2.0)
    await task


async def test_a_clip_plays_anyway_after_the_bound_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.playback.dave")
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert not await wait_for_dave(voice(1, False), 7, within=0.1)
    assert loop.time() - start < 1.0
    assert "Guild 7: not in the call's end-to-end encryption group" in caplog.text


class _Session:
    ready = True

    def process_proposals(self, *args: Any) -> None:
        raise ValueError("CommitToPendingProposalsFailed(DuplicateSignatureKey)")


class _State:
    def __init__(self) -> None:
        self.dave_session: Any = _Session()
        self.server_id = 42
        self.recovered: list[int] = []
        self.disconnected = 0

    async def disconnect(self) -> None:
        self.disconnected += 1

    async def _recover_from_invalid_commit(self, transition_id: int) -> None:
        self.recovered.append(transition_id)


def _websocket() -> tuple[DaveVoiceWebSocket, _State]:
    ws = DaveVoiceWebSocket.__new__(DaveVoiceWebSocket)
    state = _State()
    ws._connection = state  # type: ignore[assignment]
    ws.seq_ack = -1
    return ws, state


async def test_a_davey_failure_in_the_reader_is_caught_and_the_bot_rejoins_its_group(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.playback.dave")
    ws, state = _websocket()
    proposals = b"\x00\x05\x1b\x00" + b"proposal"
    await ws.received_binary_message(proposals)  # Raised out of the reader before.
    assert state.recovered == [0]
    assert state.disconnected == 0
    assert "DuplicateSignatureKey" in caplog.text
    assert "attempt 1 of 3" in caplog.text


async def test_past_the_bound_of_rejoins_the_bot_leaves_voice_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.playback.dave")
    ws, state = _websocket()
    for _ in range(dave.MAX_RECOVERIES + 1):
        await ws.received_binary_message(b"\x00\x05\x1b\x00proposal")
    assert len(state.recovered) == dave.MAX_RECOVERIES
    assert state.disconnected == 1
    assert "leaving voice, members with waiting messages are told" in caplog.text


async def test_an_earlier_commit_of_ours_announced_is_not_merged_but_rejoined() -> None:
    ws, state = _websocket()
    recovery = dave._recovery(state)
    recovery.sent = [b"commit-one" + b"welcome", b"commit-two" + b"welcome"]
    announce = b"\x00\x09\x1d\x00\x03" + b"commit-one"
    await ws.received_binary_message(announce)
    assert state.recovered == [3]
    assert recovery.sent == []


def test_only_an_earlier_commit_of_ours_counts_as_stale() -> None:
    sent = [b"first+welcome", b"second+welcome"]
    assert dave._stale_own_commit(sent, b"first")
    assert not dave._stale_own_commit(sent, b"second")
    assert not dave._stale_own_commit(sent, b"someone else's")
    assert not dave._stale_own_commit(sent[:1], b"first")
