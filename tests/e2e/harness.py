"""Runs the real bot (`python -m bot run`) as a subprocess against the emulator and the fake
Segmind server, with an environment built from scratch so no real key can leak in."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from tests.e2e.discord_emulator import Emulator
from tests.e2e.discord_emulator.state import GUILD_ID
from tests.fake_segmind import FakeSegmind

REPO = Path(__file__).resolve().parents[2]
#: Only what a Python process needs to start; everything else is set explicitly.
_PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT")


class BotProcess:
    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def wait_for_log(self, text: str, within: float) -> None:
        """Wait for a line in the bot's output; fail with the output if it never comes."""
        try:
            async with asyncio.timeout(within):
                while text not in self.log():
                    if self.process.returncode is not None:
                        break
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pass
        if text not in self.log():
            raise AssertionError(f"bot never logged {text!r}; its output:\n{self.log()}")

    async def terminate(self, within: float) -> int:
        """SIGTERM, then the exit code; fails if the bot is still running after `within` s."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            raise AssertionError(
                f"bot still running {within} s after SIGTERM; output:\n{self.log()}"
            ) from None

    async def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


def bot_environment(emulator: Emulator, segmind: FakeSegmind, data_dir: Path) -> dict[str, str]:
    assert emulator.certificate is not None
    env = {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}
    env.update(
        HOME=str(data_dir),
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        DISCORD_TOKEN=emulator.token,
        DISCORD_API_BASE_URL=emulator.base_url,
        SEGMIND_API_KEY=segmind.api_key,
        SEGMIND_BASE_URL=segmind.base_url,
        SEGMIND_RPM="600",
        DATA_DIR=str(data_dir),
        DEV_GUILD_ID=str(GUILD_ID),
        USER_COOLDOWN="0",
        # The emulator sends every server at once: no need to wait discord.py's 2 s for more.
        GUILD_READY_TIMEOUT="0.2",
        # E2E_BOT_LOG_LEVEL=DEBUG shows discord.py's voice and gateway traffic in failures.
        LOG_LEVEL=os.environ.get("E2E_BOT_LOG_LEVEL", "INFO"),
        SSL_CERT_FILE=str(emulator.certificate.cert),
    )
    return env


async def start_bot(
    emulator: Emulator, segmind: FakeSegmind, workdir: Path, **extra_env: str
) -> BotProcess:
    """Start the bot and wait until discord.py has dispatched `on_ready` (after GUILD_CREATE)."""
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "bot.log"
    env = bot_environment(emulator, segmind, data_dir) | extra_env
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            cwd=workdir,  # No .env file here, so nothing outside `env` is read.
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    bot = BotProcess(process, log_path)
    try:
        await bot.wait_for_log("Ready as", within=20)
    except BaseException:
        await bot.kill()
        raise
    return bot


@contextlib.asynccontextmanager
async def running_bot(
    emulator: Emulator, segmind: FakeSegmind, workdir: Path, **extra_env: str
) -> AsyncIterator[BotProcess]:
    """The bot for one test: stopped afterwards, its output printed for a failing test."""
    process = await start_bot(emulator, segmind, workdir, **extra_env)
    try:
        yield process
    finally:
        if process.process.returncode is None:
            await process.terminate(within=15)
        print(f"--- bot output ---\n{process.log()}")
