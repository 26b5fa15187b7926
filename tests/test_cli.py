"""`python -m bot say` end to end against the fake Segmind server over real HTTP."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot import audio
from bot.audio import AudioFormat
from bot.cli import main
from bot.config import load_settings
from bot.say import say as say_command
from bot.synthesis.cluster import key_prefix
from tests import fake_segmind as fs
from tests.conftest import TEST_API_KEY
from tests.helpers import fake_segmind_in_thread
from tests.redis_server import RedisServer
from tests.servers import free_port

TEXT = "The quick brown fox jumps over the lazy dog."
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake() -> Iterator[fs.FakeSegmind]:
    with fake_segmind_in_thread(api_key=TEST_API_KEY) as server:
        yield server


@pytest.fixture
def say(
    fake: fs.FakeSegmind,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> Callable[..., tuple[int, str, str]]:
    """Run the CLI in-process with settings pointing at the fake; fast retries by default."""
    monkeypatch.setenv("SEGMIND_BASE_URL", fake.base_url)
    monkeypatch.setenv("SEGMIND_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("BACKOFF_BASE", "0.01")
    # The scheduler backs off a 429 without reset headers by one slot (60 s / rpm).
    monkeypatch.setenv("SEGMIND_RPM", "600")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")

    def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        code = main(["--env-file", str(tmp_path / "absent.env"), *args])
        out, err = capsys.readouterr()
        assert TEST_API_KEY not in out + err
        assert "Traceback" not in err
        return code, out, err

    return run


def decoded_duration(path: Path) -> float:
    fmt = AudioFormat.from_extension(path.suffix)
    return audio.decode(path.read_bytes(), fmt).duration


@pytest.mark.parametrize("shape", list(fs.Shape))
def test_every_response_shape_makes_a_file_of_the_right_duration(
    say: Callable[..., tuple[int, str, str]],
    fake: fs.FakeSegmind,
    tmp_path: Path,
    shape: fs.Shape,
) -> None:
    fake.shape = shape
    out = tmp_path / "out.ogg"
    code, stdout, _ = say("say", TEXT, "--voice", "kore", "-o", str(out))
    assert code == 0
    assert fake.tts_calls == 1
    expected = fake.expected_duration(TEXT)
    assert decoded_duration(out) == pytest.approx(expected, abs=0.05)
    assert f"Wrote {out}: Kore, {expected:.2f} s, Ogg Opus" in stdout
    assert "Remaining credits: 99.995" in stdout
    assert fake.requests[0].json_body == {"text": TEXT, "voice_1": "Kore", "temperature": 0.4}


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".ogg"])
def test_output_format_follows_the_extension(
    say: Callable[..., tuple[int, str, str]], fake: fs.FakeSegmind, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"hello{suffix}"
    code, _, _ = say("say", TEXT, "--voice-2", "Puck", "--temperature", "0.7", "-o", str(out))
    assert code == 0
    fmt = AudioFormat.from_extension(suffix)
    assert audio.sniff_format(None, out.read_bytes()[:64]) is fmt
    assert decoded_duration(out) == pytest.approx(fake.expected_duration(TEXT), abs=0.05)
    assert fake.requests[0].json_body == {
        "text": TEXT,
        "voice_1": "Zephyr",
        "voice_2": "Puck",
        "temperature": 0.7,
    }


@pytest.mark.parametrize(
    ("fault", "fragment"),
    [
        (fs.status(400, "text rejected"), "HTTP 400 (bad request): Segmind said: text rejected"),
        (fs.status(401, "bad key"), "HTTP 401 (the API key was rejected)"),
        (fs.status(403, "no access"), "HTTP 403 (the API key lacks permission"),
        (fs.status(404, "no model"), "HTTP 404 (model or endpoint not found"),
        (fs.status(406, "no credits"), "HTTP 406 (out of credits"),
        (fs.wrong_content(b"<html><title>Login</title></html>", "text/html"), "not audio"),
        (fs.wrong_content(b"", "audio/wav"), "not audio"),
        (fs.wrong_content(b"RIFF\0\0\0\0WAVEjunkjunkjunk", "audio/wav"), "undecodable wav"),
        (fs.wrong_content(b'{"result": "ok"}', "application/json"), "JSON answer without audio"),
    ],
)
def test_errors_that_are_not_retried_make_exactly_one_request(
    say: Callable[..., tuple[int, str, str]],
    fake: fs.FakeSegmind,
    tmp_path: Path,
    fault: fs.Fault,
    fragment: str,
) -> None:
    fake.enqueue(fault)
    out = tmp_path / "out.ogg"
    code, stdout, stderr = say("say", TEXT, "-o", str(out))
    assert code == 1
    assert fake.tts_calls == 1
    assert not out.exists()
    assert stdout == ""
    assert stderr.count("\n") == 1
    assert stderr.startswith("error: ")
    assert fragment in stderr


def test_real_validation_errors_from_the_server_and_wrong_key(
    say: Callable[..., tuple[int, str, str]], fake: fs.FakeSegmind, tmp_path: Path
) -> None:
    code, _, stderr = say(
        "say", TEXT, "-o", str(tmp_path / "a.ogg"), env={"SEGMIND_API_KEY": "wrong"}
    )
    assert (code, fake.tts_calls) == (1, 1)
    assert "the API key was rejected" in stderr
    fake.credits = 0
    code, _, stderr = say(
        "say", TEXT, "-o", str(tmp_path / "b.ogg"), env={"SEGMIND_API_KEY": TEST_API_KEY}
    )
    assert (code, fake.tts_calls) == (1, 2)
    assert "out of credits" in stderr
    code, _, stderr = say("say", TEXT, "-o", str(tmp_path / "c.ogg"), env={"SEGMIND_MODEL": "nope"})
    assert code == 1
    assert "HTTP 404" in stderr


@pytest.mark.parametrize("style", ["seconds", "http-date", "iso", "epoch", "reset-http-date"])
def test_429_waits_for_the_reset_then_delivers(
    say: Callable[..., tuple[int, str, str]], fake: fs.FakeSegmind, tmp_path: Path, style: str
) -> None:
    fake.enqueue(fs.rate_limited(retry_after=1.0, style=style))  # type: ignore[arg-type]
    out = tmp_path / "out.ogg"
    code, _, _ = say("say", TEXT, "-o", str(out))
    assert code == 0
    assert fake.statuses() == [429, 200]
    gap = fake.requests[1].received - fake.requests[0].received
    # HTTP dates have whole-second resolution, so the reset can be up to 1 s sooner.
    low = 0.0 if "date" in style else 0.95
    assert low <= gap < 2.5
    assert decoded_duration(out) == pytest.approx(fake.expected_duration(TEXT), abs=0.05)


@pytest.mark.parametrize(
    "faults",
    [
        [fs.status(500), fs.status(502)],
        [fs.status(504, body=b"<html>Gateway Timeout</html>")],
        [fs.drop(), fs.drop()],
        [fs.delay(2.0)],
        [fs.slow_body(2.0)],
        [fs.rate_limited(style="none")],
    ],
    ids=["500-502", "504-html", "dropped", "slow-headers", "slow-body", "429-no-headers"],
)
def test_transient_failures_are_retried_then_deliver(
    say: Callable[..., tuple[int, str, str]],
    fake: fs.FakeSegmind,
    tmp_path: Path,
    faults: list[fs.Fault],
) -> None:
    fake.enqueue(*faults)
    out = tmp_path / "out.wav"
    code, _, stderr = say("say", TEXT, "-o", str(out), env={"REQUEST_TIMEOUT": "0.5"})
    assert code == 0, stderr
    assert fake.tts_calls == len(faults) + 1
    assert fake.statuses()[-1] == 200
    assert decoded_duration(out) == pytest.approx(fake.expected_duration(TEXT), abs=0.05)


def test_retries_are_bounded_by_max_attempts(
    say: Callable[..., tuple[int, str, str]], fake: fs.FakeSegmind, tmp_path: Path
) -> None:
    fake.enqueue(*[fs.status(502)] * 5)
    code, _, stderr = say("say", TEXT, "-o", str(tmp_path / "x.ogg"), env={"MAX_ATTEMPTS": "3"})
    assert code == 1
    assert fake.tts_calls == 3
    assert "HTTP 502 (bad gateway)" in stderr
    assert "after 3 attempts" in stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["say", "   ", "-o", "{tmp}/a.ogg"], "no text to speak"),
        (["say", "hi", "--voice", "Bob", "-o", "{tmp}/a.ogg"], "not one of the 30 voices"),
        (["say", "hi", "--voice-2", "Korr", "-o", "{tmp}/a.ogg"], "Did you mean Kore"),
        (["say", "hi", "--temperature", "3", "-o", "{tmp}/a.ogg"], "from 0 to 2"),
        (["say", "x" * 2001, "-o", "{tmp}/a.ogg"], "limit is 2,000"),
        (["say", "hi", "-o", "{tmp}/a.flac"], ".flac"),
        (["say", "hi", "-o", "{tmp}/a.pcm"], "cannot write 'a.pcm'"),
        (["say", "hi", "-o", "{tmp}/missing/a.ogg"], "does not exist"),
    ],
)
def test_invalid_input_costs_nothing(
    say: Callable[..., tuple[int, str, str]],
    fake: fs.FakeSegmind,
    tmp_path: Path,
    args: list[str],
    fragment: str,
) -> None:
    code, _, stderr = say(*(arg.replace("{tmp}", str(tmp_path)) for arg in args))
    assert code == 2
    assert fragment in stderr
    assert fake.tts_calls == 0


def test_missing_key_is_named(
    say: Callable[..., tuple[int, str, str]], fake: fs.FakeSegmind, tmp_path: Path
) -> None:
    code, _, stderr = say("say", "hi", "-o", str(tmp_path / "a.ogg"), env={"SEGMIND_API_KEY": ""})
    assert code == 2
    assert "SEGMIND_API_KEY" in stderr
    assert ".env.example" in stderr
    assert fake.tts_calls == 0


def test_credits_command(say: Callable[..., tuple[int, str, str]], fake: fs.FakeSegmind) -> None:
    code, stdout, _ = say("credits")
    assert code == 0
    assert "API key accepted. Credits: 100" in stdout


def test_voices_lists_all_thirty(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["voices"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 30
    assert lines[3].split() == ["Kore", "Firm"]


def _subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DISCORD_TOKEN", "SEGMIND_API_KEY"}}
    env.update(extra)
    return env


def test_as_a_real_process(fake: fs.FakeSegmind, tmp_path: Path) -> None:
    out = tmp_path / "hello.mp3"
    env = _subprocess_env(SEGMIND_API_KEY=TEST_API_KEY, SEGMIND_BASE_URL=fake.base_url)
    done = subprocess.run(
        [sys.executable, "-m", "bot", "say", "Hello, world", "--voice", "Sulafat", "-o", str(out)],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Sulafat" in done.stdout
    assert decoded_duration(out) == pytest.approx(fake.expected_duration("Hello, world"), abs=0.05)
    fake.enqueue(fs.status(401))
    failed = subprocess.run(
        [sys.executable, "-m", "bot", "say", "Hello", "-o", str(out)],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: HTTP 401 (the API key was rejected)")
    assert failed.stderr.count("\n") == 1
    assert "Traceback" not in failed.stderr


def test_run_without_settings_names_them(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env={**_subprocess_env(), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "DISCORD_TOKEN, SEGMIND_API_KEY" in done.stderr
    assert ".env.example" in done.stderr


def test_run_with_a_wrong_redis_password_names_redis_url_before_logging_in(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    server = RedisServer(redis_server.binary, args=["--requirepass", "the-RIGHT-pass"])
    server.start()
    # Nothing listens at this Discord: a bot that got as far as logging in would retry forever.
    discord = f"http://127.0.0.1:{free_port()}"
    env = _subprocess_env(
        DISCORD_TOKEN="fake.discord.token",
        SEGMIND_API_KEY=TEST_API_KEY,
        DISCORD_API_BASE_URL=discord,
        REDIS_URL=f"redis://:a-WRONG-pass@127.0.0.1:{server.port}/0",
        DATA_DIR=str(tmp_path / "data"),
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bot", "run"],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        server.stop()
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: REDIS_URL")
    assert done.stderr.count("\n") == 1
    assert "a-WRONG-pass" not in done.stderr + done.stdout


def test_identical_says_in_a_cluster_pay_for_one_call(
    say: Callable[..., tuple[int, str, str]],
    fake: fs.FakeSegmind,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """Each `say` as its own container would run it (a data directory of its own, so no disk
    cache in common): the second and third find the first one's audio in Redis."""
    for n in range(3):
        out = tmp_path / f"say{n}.ogg"
        code, stdout, stderr = say(
            "say",
            TEXT,
            "-o",
            str(out),
            env={"REDIS_URL": redis_url, "DATA_DIR": str(tmp_path / f"data{n}")},
        )
        assert code == 0, stderr
        assert decoded_duration(out) == pytest.approx(fake.expected_duration(TEXT), abs=0.05)
        assert f"Wrote {out}" in stdout
    assert fake.tts_calls == 1


async def test_says_at_once_in_a_cluster_share_one_call_and_its_window(
    fake: fs.FakeSegmind, redis_url: str, tmp_path: Path
) -> None:
    """Three `say`s at the same moment (three processes on one Redis): one call is made and
    the others wait for its answer; the call took its start from the shared window."""
    fake.latency = 0.5
    says = (say_at_once(fake, redis_url, tmp_path, n) for n in range(3))
    assert await asyncio.gather(*says) == [0, 0, 0]
    assert fake.tts_calls == 1
    async with Redis.from_url(redis_url) as client:
        assert await client.zcard(key_prefix(TEST_API_KEY) + "starts") == 1


async def test_a_script_s_different_says_at_once_in_a_cluster_are_all_made(
    fake: fs.FakeSegmind, redis_url: str, tmp_path: Path
) -> None:
    """The terminal is one user for the whole cluster: no member's waiting cap (3) for it."""
    fake.latency = 0.5
    says = (say_at_once(fake, redis_url, tmp_path, n, text=f"Line {n}.") for n in range(5))
    assert await asyncio.gather(*says) == [0] * 5
    assert fake.tts_calls == 5


async def say_at_once(
    fake: fs.FakeSegmind, redis_url: str, tmp_path: Path, n: int, *, text: str = TEXT
) -> int:
    """One `say` as a process of its own would run it (in this process's event loop)."""
    settings = load_settings(
        env_file=None,
        segmind_base_url=fake.base_url,
        segmind_api_key=TEST_API_KEY,
        redis_url=redis_url,
        data_dir=tmp_path / f"data{n}",
        log_level="WARNING",
    )
    args = argparse.Namespace(
        text=text,
        output=tmp_path / f"at-once{n}.ogg",
        format=None,
        voice=None,
        voice_2=None,
        temperature=None,
        style=None,
    )
    return await say_command(settings, args)
