"""Fixtures for the end-to-end tier: the Discord emulator, the fake Segmind server, and the
real bot process between them, all on 127.0.0.1 and on the test's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.discord_emulator import Emulator
from tests.e2e.harness import BotProcess, running_bot
from tests.fake_segmind import FakeSegmind, Shape


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[Emulator]:
    async with Emulator(tmp_path / "certs") as emulator:
        yield emulator


@pytest.fixture
async def segmind(request: pytest.FixtureRequest) -> AsyncIterator[FakeSegmind]:
    """The fake Segmind; a test module sets `LATENCY` (seconds per call) where its calls must
    take long enough for others to wait behind them, and `SECONDS_PER_CHAR` where its clips
    must last (the voice tier plays each clip in real time: shorter speech, a quicker suite)."""
    latency = getattr(request.module, "LATENCY", 0.05)
    per_char = getattr(request.module, "SECONDS_PER_CHAR", 0.03)
    async with FakeSegmind(
        api_key="sk-e2e-fake", shape=Shape.OGG, latency=latency, seconds_per_char=per_char
    ) as fake:
        yield fake


@pytest.fixture
async def http(emulator: Emulator) -> AsyncIterator[aiohttp.ClientSession]:
    """A client speaking to the emulator's REST API as the bot does, with its token."""
    headers = {"Authorization": f"Bot {emulator.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield session


@pytest.fixture
async def bot(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> AsyncIterator[BotProcess]:
    async with running_bot(emulator, segmind, tmp_path) as process:
        yield process
