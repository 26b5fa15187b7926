"""The command line as an operator meets it after the first day, each in a real process: the
program's name in `--version`, error lines that never show a URL's userinfo or query,
settings errors that read as sentences and come before anything runs, and `say -o -`
writing the audio itself to standard output."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import __version__, audio
from bot.audio import AudioFormat
from tests import fake_segmind as fs
from tests.conftest import TEST_API_KEY
from tests.helpers import fake_segmind_in_thread
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
TEXT = "The quick brown fox jumps over the lazy dog."
#: The project's name in pyproject.toml, its console script's, and what --version says.
PROGRAM = "gemini-tts-bot"


@pytest.fixture
def fake() -> Iterator[fs.FakeSegmind]:
    with fake_segmind_in_thread(api_key=TEST_API_KEY) as server:
        yield server


def env(**extra: str) -> dict[str, str]:
    """The environment without the developer's settings, the checkout on the path."""
    names = {"DISCORD_TOKEN", "SEGMIND_API_KEY", "SEGMIND_BASE_URL", "DATABASE_URL", "LOG_LEVEL"}
    kept = {k: v for k, v in os.environ.items() if k not in names}
    return {**kept, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8", **extra}


def bot(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=env(**extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_names_the_program_as_pyproject_does(tmp_path: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == PROGRAM
    assert project["scripts"][PROGRAM] == "bot.cli:main"
    assert project["version"] == __version__
    done = bot("--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"gemini-tts-bot {__version__}\n")


def test_version_through_the_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / PROGRAM
    if not script.is_file():
        pytest.skip(f"{PROGRAM} is not installed next to {sys.executable}")
    done = subprocess.run(
        [str(script), "--version"],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, f"gemini-tts-bot {__version__}\n")


def test_a_url_in_an_error_line_has_no_userinfo_and_no_query(tmp_path: Path) -> None:
    """A key pasted into SEGMIND_BASE_URL must not come back in the error."""
    port = free_port()
    url = f"http://operator:pa55-w0rd@127.0.0.1:{port}/v1?key=SG_pasted-0123456789&x=1"
    done = bot("credits", cwd=tmp_path, SEGMIND_API_KEY=TEST_API_KEY, SEGMIND_BASE_URL=url)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert f"(SEGMIND_BASE_URL=http://127.0.0.1:{port}/v1)" in done.stderr
    for piece in ("operator", "pa55-w0rd", "SG_pasted", "key=", "x=1", TEST_API_KEY):
        assert piece not in done.stderr


@pytest.mark.parametrize(
    "setting",
    [
        {"DEFAULT_VOICE": "Nobody"},
        {"DEFAULT_VOICE": "Korr"},
        {"SHARD_IDS": "1"},
        {"SEGMIND_RPM": "many"},
        {"REDIS_URL": "http://cache"},
        {"DATABASE_URL": "mysql://bot:pw@db/tts"},
    ],
)
def test_settings_errors_read_as_sentences(tmp_path: Path, setting: dict[str, str]) -> None:
    done = bot("credits", cwd=tmp_path, SEGMIND_API_KEY=TEST_API_KEY, **setting)
    assert done.returncode == 2
    assert done.stderr.startswith("error: Invalid settings — ")
    assert done.stderr.endswith("See .env.example.\n")
    assert ".." not in done.stderr
    assert "?." not in done.stderr
    assert "Value error" not in done.stderr


def test_a_database_url_no_backend_takes_stops_every_command_at_once(
    tmp_path: Path, fake: fs.FakeSegmind
) -> None:
    """Not only `run`, after the Discord login: `credits` too, before it calls anything."""
    done = bot(
        "credits",
        cwd=tmp_path,
        SEGMIND_API_KEY=TEST_API_KEY,
        SEGMIND_BASE_URL=fake.base_url,
        DATABASE_URL="mysql://bot:hunter2@db/tts",
    )
    assert done.returncode == 2
    assert "DATABASE_URL: not a database URL the bot supports (mysql://)" in done.stderr
    assert "postgresql://user:password@host/database" in done.stderr  # The form to follow.
    assert "hunter2" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("args", "fmt"),
    [
        ((), AudioFormat.OGG),
        (("--format", "wav"), AudioFormat.WAV),
        (("--format", "mp3"), AudioFormat.MP3),
    ],
)
def test_say_dash_o_dash_writes_the_audio_to_standard_output(
    tmp_path: Path, fake: fs.FakeSegmind, args: tuple[str, ...], fmt: AudioFormat
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot", "say", TEXT, "--voice", "Kore", "-o", "-", *args],
        cwd=tmp_path,
        env=env(SEGMIND_API_KEY=TEST_API_KEY, SEGMIND_BASE_URL=fake.base_url),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert audio.sniff_format(None, done.stdout[:64]) is fmt
    decoded = audio.decode(done.stdout, fmt)
    assert decoded.duration == pytest.approx(fake.expected_duration(TEXT), abs=0.05)
    said = done.stderr.decode()
    assert said.startswith("Wrote standard output: Kore, ")
    assert "Remaining credits: 99.995" in said
    assert list(tmp_path.iterdir()) == []  # No file anywhere.


def test_say_to_a_terminal_is_refused_before_the_call(tmp_path: Path, fake: fs.FakeSegmind) -> None:
    """Audio on a terminal is noise and a paid call wasted: redirect it or name a file."""
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bot", "say", TEXT, "-o", "-"],
            cwd=tmp_path,
            env=env(SEGMIND_API_KEY=TEST_API_KEY, SEGMIND_BASE_URL=fake.base_url),
            stdout=follower,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 2
    assert "standard output is a terminal" in done.stderr
    assert fake.tts_calls == 0


def test_say_refuses_a_format_its_file_name_contradicts(
    tmp_path: Path, fake: fs.FakeSegmind
) -> None:
    done = bot(
        "say",
        TEXT,
        "-o",
        "hello.wav",
        "--format",
        "mp3",
        cwd=tmp_path,
        SEGMIND_API_KEY=TEST_API_KEY,
        SEGMIND_BASE_URL=fake.base_url,
    )
    assert done.returncode == 2
    assert "'hello.wav' is named WAV but --format says MP3" in done.stderr
    assert fake.tts_calls == 0
