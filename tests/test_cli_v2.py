"""The terminal's `say` over Segmind's v2 protocol passes the same tests as over v1.

Each test here runs a test of `tests/test_cli.py` unchanged, with `SEGMIND_API=v2` and quick
polls; only the answer shapes v2 can give (a container, linked or in base64) are used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.config import Settings
from bot.synthesis import client as client_module
from tests import fake_segmind as fs
from tests import test_cli as v1
from tests.conftest import TEST_API_KEY
from tests.helpers import fake_segmind_in_thread

Say = Callable[..., tuple[int, str, str]]


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
) -> Say:
    monkeypatch.setenv("SEGMIND_API", "v2")
    quick = client_module.Timeouts.from_settings

    def polls_quickly(settings: Settings) -> client_module.Timeouts:
        made = quick(settings)
        return client_module.Timeouts(
            request_timeout=made.request_timeout,
            connect_timeout=made.connect_timeout,
            job_timeout=made.job_timeout,
            first_poll=0.02,
            last_poll=0.1,
        )

    monkeypatch.setattr(client_module.Timeouts, "from_settings", polls_quickly)
    run: Say = v1.say.__wrapped__(fake, monkeypatch, tmp_path, capsys)  # type: ignore[attr-defined]
    return run


@pytest.mark.parametrize("shape", [fs.Shape.WAV, fs.Shape.MP3, fs.Shape.OGG])
@pytest.mark.parametrize("output", ["url", "base64"])
def test_every_response_shape_makes_a_file_of_the_right_duration(
    say: Say, fake: fs.FakeSegmind, tmp_path: Path, shape: fs.Shape, output: str
) -> None:
    fake.v2.output = output  # type: ignore[assignment]
    v1.test_every_response_shape_makes_a_file_of_the_right_duration(say, fake, tmp_path, shape)


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".ogg"])
def test_output_format_follows_the_extension(
    say: Say, fake: fs.FakeSegmind, tmp_path: Path, suffix: str
) -> None:
    v1.test_output_format_follows_the_extension(say, fake, tmp_path, suffix)


@pytest.mark.parametrize(
    ("fault", "fragment"),
    [
        (fs.status(400, "text rejected"), "HTTP 400 (bad request): Segmind said: text rejected"),
        (fs.status(401, "bad key"), "HTTP 401 (the API key was rejected)"),
        (fs.status(403, "no access"), "HTTP 403 (the API key lacks permission"),
        (fs.status(404, "no model"), "HTTP 404 (model or endpoint not found"),
        (fs.status(406, "no credits"), "HTTP 406 (out of credits"),
        (fs.status(410, "gone"), "set SEGMIND_MODEL"),
    ],
)
def test_errors_that_are_not_retried_make_exactly_one_request(
    say: Say, fake: fs.FakeSegmind, tmp_path: Path, fault: fs.Fault, fragment: str
) -> None:
    v1.test_errors_that_are_not_retried_make_exactly_one_request(
        say, fake, tmp_path, fault, fragment
    )


def test_real_validation_errors_from_the_server_and_wrong_key(
    say: Say, fake: fs.FakeSegmind, tmp_path: Path
) -> None:
    v1.test_real_validation_errors_from_the_server_and_wrong_key(say, fake, tmp_path)


@pytest.mark.parametrize("style", ["seconds", "http-date", "iso", "epoch", "reset-http-date"])
def test_429_waits_for_the_reset_then_delivers(
    say: Say, fake: fs.FakeSegmind, tmp_path: Path, style: str
) -> None:
    v1.test_429_waits_for_the_reset_then_delivers(say, fake, tmp_path, style)


@pytest.mark.parametrize(
    "faults",
    [
        [fs.status(500), fs.status(502)],
        [fs.status(504, body=b"<html>Gateway Timeout</html>")],
        [fs.drop(), fs.drop()],
        [fs.delay(2.0)],
        [fs.rate_limited(style="none")],
    ],
    ids=["500-502", "504-html", "dropped", "slow-headers", "429-no-headers"],
)
def test_transient_failures_are_retried_then_deliver(
    say: Say, fake: fs.FakeSegmind, tmp_path: Path, faults: list[fs.Fault]
) -> None:
    v1.test_transient_failures_are_retried_then_deliver(say, fake, tmp_path, faults)


def test_retries_are_bounded_by_max_attempts(
    say: Say, fake: fs.FakeSegmind, tmp_path: Path
) -> None:
    v1.test_retries_are_bounded_by_max_attempts(say, fake, tmp_path)


def test_credits_command(say: Say, fake: fs.FakeSegmind) -> None:
    v1.test_credits_command(say, fake)
