"""`python -m bot check`, the real command in a process of its own, against the Discord
emulator, the fake Segmind server and a throwaway data directory: a working setup passes
every line, and each broken part fails its own line (and the exit code) without a secret
in the output."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from bot.config import load_settings
from bot.storage import open_storage
from bot.storage.migrations import LATEST_VERSION
from tests.e2e.discord_emulator import Emulator
from tests.e2e.harness import REPO, bot_environment
from tests.fake_segmind import FakeSegmind
from tests.redis_server import RedisServer
from tests.servers import free_port

SEGMIND_KEY = "SG_check-key-0123456789abcdef"
PASSWORD = "pg-pass-word-4f9c2e71"
#: Every line the check prints for a complete setup, by its name.
PARTS = (
    "Settings",
    "Data directory",
    "Storage",
    "Redis",
    "Segmind",
    "Discord",
    "Message Content intent",
    "Voice",
    "Opus",
)


@dataclass
class Checked:
    code: int
    stdout: str
    stderr: str

    def line(self, part: str) -> str:
        found = [line for line in self.stdout.splitlines() if line[2:].startswith(f"{part}:")]
        assert len(found) == 1, f"no single {part!r} line in:\n{self.stdout}"
        return found[0]

    def mark(self, part: str) -> str:
        return self.line(part)[0]

    def failed(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.startswith("✗")]


@dataclass
class Setup:
    emulator: Emulator
    segmind: FakeSegmind
    workdir: Path

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    async def check(self, *, secrets: tuple[str, ...] = (), **env: str) -> Checked:
        """Run the check with the working setup's environment, changed by `env`."""
        environment = bot_environment(self.emulator, self.segmind, self.data_dir)
        environment |= {"PYTHONIOENCODING": "utf-8"} | env
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "check",
            cwd=self.workdir,  # No .env here: nothing outside `environment` is read.
            env=environment,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        checked = Checked(process.returncode, out.decode(), err.decode())
        shown = checked.stdout + checked.stderr
        for secret in (self.emulator.token, SEGMIND_KEY, PASSWORD, *secrets):
            assert secret not in shown
        assert "Traceback" not in shown
        return checked


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async with (
        Emulator(tmp_path / "certs") as emulator,
        FakeSegmind(api_key=SEGMIND_KEY) as segmind,
    ):
        setup = Setup(emulator, segmind, tmp_path)
        setup.data_dir.mkdir()
        yield setup


def closed_port() -> int:
    return free_port()  # Free a moment ago, and nothing listens there.


async def test_a_working_setup_passes_every_line_and_changes_nothing(setup: Setup) -> None:
    checked = await setup.check()
    assert checked.code == 0, checked.stdout
    for part in PARTS:
        assert checked.mark(part) == ("-" if part == "Redis" else "✓"), checked.line(part)
    assert "not used (REDIS_URL is empty)" in checked.line("Redis")
    assert "the bot is TTS" in checked.line("Discord")
    assert "100 credits" in checked.line("Segmind")
    assert checked.stdout.splitlines()[-1].startswith("All 8 checks passed")
    # Looked at, not started: no database, no gateway session, no paid call.
    assert not setup.data_dir.joinpath("bot.db").exists()
    assert list(setup.data_dir.iterdir()) == []
    assert setup.emulator.identifies == []
    assert setup.segmind.tts_calls == 0
    asked = {(r.method, r.path) for r in setup.emulator.requests}
    assert asked == {("GET", "/users/@me"), ("GET", "/applications/@me")}


async def test_an_existing_database_shows_its_schema_version(setup: Setup) -> None:
    settings = load_settings(env_file=None, data_dir=setup.data_dir)
    storage = await open_storage(settings)
    await storage.close()
    checked = await setup.check()
    assert checked.code == 0
    assert checked.line("Storage").endswith(f"schema version {LATEST_VERSION} (current)")
    assert str(setup.data_dir / "bot.db") in checked.line("Storage")


async def test_an_unreachable_database_fails_the_storage_line(setup: Setup) -> None:
    port = closed_port()
    url = f"postgresql://bot:{PASSWORD}@127.0.0.1:{port}/tts"
    checked = await setup.check(DATABASE_URL=url)
    assert checked.code == 1
    assert checked.mark("Storage") == "✗"
    assert f"Could not connect to PostgreSQL at bot@127.0.0.1:{port}/tts" in checked.line("Storage")
    assert "; start the server, or fix DATABASE_URL" in checked.line("Storage")
    assert len(checked.failed()) == 1
    assert checked.mark("Discord") == "✓"


async def test_a_database_url_no_backend_takes_fails_the_settings(setup: Setup) -> None:
    checked = await setup.check(DATABASE_URL="mysql://bot:hunter2-secret@db/tts")
    assert checked.code == 1
    line = checked.line("Settings")
    assert line.startswith("✗")
    assert "DATABASE_URL: not a database URL the bot supports (mysql://)" in line
    assert "hunter2" not in checked.stdout
    assert "Storage, Redis, Segmind and Discord were not checked".lower() in checked.stdout.lower()
    assert checked.mark("Voice") == "✓"  # What needs no settings is still looked at.


async def test_redis_down_fails_the_redis_line(setup: Setup) -> None:
    port = closed_port()
    checked = await setup.check(REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    assert checked.code == 1
    line = checked.line("Redis")
    assert line.startswith(f"✗ Redis: redis://127.0.0.1:{port}/0 does not answer")
    assert "start Redis, or fix REDIS_URL" in line
    assert len(checked.failed()) == 1


async def test_a_working_redis_passes_and_keeps_nothing(setup: Setup, redis_url: str) -> None:
    checked = await setup.check(REDIS_URL=redis_url)
    assert checked.code == 0, checked.stdout
    assert "answers and takes writes (Redis " in checked.line("Redis")
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0


async def test_a_redis_that_may_evict_the_rate_window_is_warned_about(
    setup: Setup, redis_server: RedisServer
) -> None:
    evicting = RedisServer(
        redis_server.binary, args=["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]
    )
    evicting.start()
    try:
        checked = await setup.check(REDIS_URL=evicting.url(0))
    finally:
        evicting.stop()
    assert checked.code == 0, checked.stdout
    line = checked.line("Redis")
    assert line.startswith("! Redis:")
    assert "maxmemory-policy allkeys-lru" in line
    assert "set maxmemory-policy noeviction" in line
    assert "maxmemory (64 MiB) too small for CACHE_SHARED_MB (256 MiB" in line


async def test_a_rejected_segmind_key_fails_the_segmind_line(setup: Setup) -> None:
    wrong = "SG_wrong-key-9876543210fedcba"
    checked = await setup.check(SEGMIND_API_KEY=wrong, secrets=(wrong,))
    assert checked.code == 1
    line = checked.line("Segmind")
    assert line.startswith("✗ Segmind: HTTP 401 (the API key was rejected)")
    assert f"(SEGMIND_BASE_URL={setup.segmind.base_url}); copy SEGMIND_API_KEY again" in line
    assert len(checked.failed()) == 1


async def test_few_credits_warn_and_none_fail(setup: Setup) -> None:
    setup.segmind.credits = 0.2
    checked = await setup.check()
    assert checked.code == 0
    assert checked.line("Segmind").startswith("! Segmind: API key accepted")
    assert "only 0.2 credits left, about 40 calls" in checked.line("Segmind")
    setup.segmind.credits = 0
    checked = await setup.check()
    assert checked.code == 1
    assert "no credits left" in checked.line("Segmind")
    assert checked.mark("Segmind") == "✗"


async def test_a_key_pasted_into_the_base_url_is_not_shown(setup: Setup) -> None:
    root = setup.segmind.base_url.removeprefix("http://")
    url = f"http://user:pa55word-12345@{root}"
    checked = await setup.check(SEGMIND_BASE_URL=url, secrets=("pa55word",))
    assert f"accepted at {setup.segmind.base_url};" in checked.line("Segmind")
    # With a query the URL is broken too (the path is appended after it): still not shown.
    checked = await setup.check(
        SEGMIND_BASE_URL=f"{url}?key=SG_pasted-0123456789", secrets=("pa55word", "SG_pasted")
    )
    assert checked.mark("Segmind") == "✗"
    assert f"(SEGMIND_BASE_URL={setup.segmind.base_url})" in checked.line("Segmind")


async def test_a_rejected_discord_token_fails_the_discord_line(setup: Setup) -> None:
    wrong = "d3JvbmctdG9rZW4.wrong.token-0123456789"
    checked = await setup.check(DISCORD_TOKEN=wrong, secrets=(wrong,))
    assert checked.code == 1
    line = checked.line("Discord")
    assert line.startswith("✗ Discord: DISCORD_TOKEN was rejected (HTTP 401")
    assert "Reset Token" in line
    assert len(checked.failed()) == 1


async def test_message_content_off_in_the_portal_fails_only_with_narration(
    tmp_path: Path,
) -> None:
    async with (
        Emulator(tmp_path / "certs", allowed_privileged_intents=0) as emulator,
        FakeSegmind(api_key=SEGMIND_KEY) as segmind,
    ):
        setup = Setup(emulator, segmind, tmp_path)
        setup.data_dir.mkdir()
        checked = await setup.check()
        assert checked.code == 1
        line = checked.line("Message Content intent")
        assert line.startswith("✗")
        assert "Privileged Gateway Intents" in line
        assert "NARRATION_ENABLED=false" in line
        checked = await setup.check(NARRATION_ENABLED="false")
        assert checked.code == 0
        assert checked.mark("Message Content intent") == "-"


async def test_without_davey_the_voice_line_fails(setup: Setup, tmp_path: Path) -> None:
    """A `davey` that cannot be imported, first on the path: what discord.py sees too."""
    shim = tmp_path / "no-davey"
    shim.mkdir()
    (shim / "davey.py").write_text('raise ImportError("davey is not installed")\n')
    path = f"{shim}:{REPO}"
    checked = await setup.check(PYTHONPATH=path)
    assert checked.code == 1
    line = checked.line("Voice")
    assert line.startswith("✗ Voice: davey missing: discord.py refuses every voice connection")
    assert "cannot speak in any voice channel" in line
    assert len(checked.failed()) == 1
    env = bot_environment(setup.emulator, setup.segmind, setup.data_dir) | {"PYTHONPATH": path}
    probe = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from discord import voice_state; print(voice_state.has_dave)",
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    seen, _ = await probe.communicate()
    assert seen.decode().strip() == "False"


async def test_a_data_directory_that_is_a_file_fails_its_line(setup: Setup) -> None:
    file = setup.workdir / "not-a-folder"
    file.write_text("")
    checked = await setup.check(DATA_DIR=str(file))
    assert checked.code == 1
    assert checked.line("Data directory").startswith(f"✗ Data directory: {file} is a file")


async def test_missing_secrets_fail_the_settings_and_skip_their_parts(setup: Setup) -> None:
    checked = await setup.check(DISCORD_TOKEN="")
    assert checked.code == 1
    assert checked.line("Settings").startswith("✗ Settings: Missing setting: DISCORD_TOKEN")
    assert checked.line("Discord") == "- Discord: not checked: DISCORD_TOKEN is not set"
    assert checked.mark("Segmind") == "✓"


async def test_a_terminal_without_unicode_gets_plain_marks(setup: Setup) -> None:
    checked = await setup.check(PYTHONIOENCODING="ascii")
    assert checked.code == 0
    assert checked.stdout.startswith("ok Settings: ")
