"""Operating the real bot process: Discord unreachable at start, `sync` with only the Discord
token, and the heartbeat that Docker's HEALTHCHECK reads."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from tests.e2e.discord_emulator import Emulator
from tests.e2e.harness import REPO, BotProcess, bot_environment
from tests.fake_segmind import FakeSegmind


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def forwarder(port: int, target: int) -> AsyncIterator[None]:
    """Discord coming back: a TCP relay on `port` to the emulator, opened late."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def spawn(tmp_path: Path, env: dict[str, str]) -> BotProcess:
    log_path = tmp_path / "bot.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=tmp_path, env=env, stdout=log, stderr=log
        )
    return BotProcess(process, log_path)


async def test_discord_unreachable_at_start_is_retried_with_back_off(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = bot_environment(emulator, segmind, data_dir) | {
        "DISCORD_API_BASE_URL": emulator.base_url.replace(f":{emulator.port}", f":{port}")
    }
    bot = await spawn(tmp_path, env)
    try:
        await bot.wait_for_log("(attempt 2)", within=15)
        async with forwarder(port, emulator.port):  # Discord is back.
            await bot.wait_for_log("Ready as", within=15)
            log = bot.log()
            attempts = [line for line in log.splitlines() if "Discord unreachable" in line]
            assert len(attempts) == 2, log
            assert "Discord unreachable (127.0.0.1)" in attempts[0]
            assert "trying again in 1 s (attempt 1)" in attempts[0]
            assert "trying again in 2 s (attempt 2)" in attempts[1]
            assert "unexpected" not in log
            assert "Traceback" not in log
            assert await bot.terminate(within=8) == 0
    finally:
        await bot.kill()


async def test_sigterm_while_waiting_to_reconnect_exits_at_once(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = bot_environment(emulator, segmind, data_dir) | {
        "DISCORD_API_BASE_URL": f"http://127.0.0.1:{free_port()}/api/v10"
    }
    bot = await spawn(tmp_path, env)
    try:
        await bot.wait_for_log("trying again in 2 s", within=10)
        assert await bot.terminate(within=3) == 0
        assert "Traceback" not in bot.log()
    finally:
        await bot.kill()


async def test_sync_needs_only_the_discord_token(
    emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> None:
    env = bot_environment(emulator, segmind, tmp_path)
    del env["SEGMIND_API_KEY"]
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot", "sync", "--guild", env["DEV_GUILD_ID"]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Synced" in done.stdout
    assert int(env["DEV_GUILD_ID"]) in emulator.commands
    assert segmind.tts_calls == 0


async def test_the_running_bot_is_healthy_and_then_stopped(
    bot: BotProcess, emulator: Emulator, segmind: FakeSegmind, tmp_path: Path
) -> None:
    env = bot_environment(emulator, segmind, tmp_path / "data")

    def health() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", "health"],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = await asyncio.to_thread(health)
    assert done.returncode == 0, done.stdout + done.stderr + bot.log()
    assert done.stdout.startswith("healthy")
    assert await bot.terminate(within=8) == 0
    done = await asyncio.to_thread(health)
    assert done.returncode == 1
    assert "not running" in done.stdout
