from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import redis

from bot.config import Settings, load_settings
from tests.redis_server import RedisServer, RedisUnavailable, find_redis_server, redis_required

#: A key that tests look for in every log line, error and exception: it must never appear.
TEST_API_KEY = "sk-test-SECRET-4f9c2d"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's real settings (environment or .env) out of every test."""
    fields = {field.upper() for field in Settings.model_fields}
    for name in list(os.environ):
        if name.upper() in fields:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        overrides.setdefault("segmind_api_key", TEST_API_KEY)
        overrides.setdefault("data_dir", tmp_path / "data")
        return load_settings(env_file=None, **overrides)

    return build


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One throwaway Redis per test process (xdist worker); skips locally, fails in CI."""
    binary = find_redis_server()
    if binary is None:
        _redis_unavailable(
            "redis-server is not installed (set REDIS_SERVER, or run scripts/test.sh, which "
            "installs it)"
        )
    server = RedisServer(binary)
    try:
        server.start()
    except RedisUnavailable as exc:
        _redis_unavailable(str(exc))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A Redis database of this test's own (numbered per test, so nothing leaks between)."""
    global _redis_dbs
    _redis_dbs = _redis_dbs % 999 + 1
    url = redis_server.url(_redis_dbs)
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


_redis_dbs = 0


def _redis_unavailable(reason: str) -> NoReturn:
    if redis_required():
        pytest.fail(f"{reason} (CI requires Redis: CI or REQUIRE_REDIS is set)", pytrace=False)
    pytest.skip(reason)
