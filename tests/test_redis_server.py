"""The throwaway Redis harness itself: when it must fail instead of skipping, and that it stops."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import redis_server as harness


@pytest.mark.parametrize(
    ("env", "required"),
    [
        ({}, False),
        ({"CI": "true"}, True),
        ({"CI": "false"}, False),
        ({"REQUIRE_REDIS": "1"}, True),
        ({"CI": "", "REQUIRE_REDIS": "no"}, False),
    ],
)
def test_ci_requires_redis(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], required: bool
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("REQUIRE_REDIS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert harness.redis_required() is required


def test_redis_server_env_points_at_the_binary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REDIS_SERVER", str(tmp_path / "redis-server"))
    assert harness.find_redis_server() == tmp_path / "redis-server"


def test_a_server_stops_and_leaves_no_directory(redis_server: harness.RedisServer) -> None:
    server = harness.RedisServer(redis_server.binary)
    server.start()
    directory = server.directory
    assert directory is not None
    assert directory.is_dir()
    assert server._answers()
    server.stop()
    assert not directory.exists()
    assert not server._answers()
