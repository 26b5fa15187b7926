"""Every storage test that takes `backend` or `storage` runs twice: on a SQLite file and on a
fresh database of a throwaway PostgreSQL server (started once per session, only if a
PostgreSQL test runs). Without PostgreSQL installed those runs skip locally, and fail in CI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from bot.storage import Storage
from tests.pg_server import PostgresServer, PostgresUnavailable, find_bin_dir, postgres_required
from tests.storage.backends import BACKENDS, Backend


def _unavailable(reason: str) -> NoReturn:
    if postgres_required():
        pytest.fail(
            f"{reason} (CI requires PostgreSQL: CI or REQUIRE_POSTGRES is set)", pytrace=False
        )
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _unavailable(
            "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH; "
            "set PG_BIN, or run scripts/test.sh, which installs it)"
        )
    try:
        server = PostgresServer(bin_dir)
    except PostgresUnavailable as exc:
        _unavailable(f"PostgreSQL cannot run here: {exc}")
    try:
        server.start()
    except PostgresUnavailable as exc:
        server.stop()
        _unavailable(f"PostgreSQL would not start: {exc}")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    name, url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "data" / "bot.db"))
    return Backend("postgres", request.getfixturevalue("postgres_url"))


@pytest.fixture
async def storage(backend: Backend) -> AsyncIterator[Storage]:
    async with backend.open() as opened:
        yield opened
