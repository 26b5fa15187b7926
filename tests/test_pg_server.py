"""The throwaway PostgreSQL harness itself: when it must fail instead of skipping, and that it
cleans up after runs that were killed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests import pg_server


@pytest.mark.parametrize(
    ("env", "required"),
    [
        ({}, False),
        ({"CI": "true"}, True),
        ({"CI": "1"}, True),
        ({"CI": "false"}, False),
        ({"REQUIRE_POSTGRES": "yes"}, True),
        ({"CI": "", "REQUIRE_POSTGRES": "0"}, False),
    ],
)
def test_ci_requires_postgresql(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], required: bool
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("REQUIRE_POSTGRES", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert pg_server.postgres_required() is required


def test_pg_bin_points_at_the_binaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("initdb", "postgres"):
        (tmp_path / name).touch()
    monkeypatch.setenv("PG_BIN", str(tmp_path))
    assert pg_server.find_bin_dir() == tmp_path


def _cluster(parent: Path, name: str, *, pid: int | None, age: float) -> Path:
    directory = parent / f"{pg_server.PREFIX}{name}"
    (directory / "data").mkdir(parents=True)
    if pid is not None:
        (directory / "data" / "postmaster.pid").write_text(f"{pid}\n/some/dir\n")
    then = time.time() - age
    os.utime(directory, (then, then))
    return directory


def test_clusters_left_by_killed_runs_are_swept(tmp_path: Path) -> None:
    old = pg_server.STALE_AFTER + 60
    dead = _cluster(tmp_path, "dead", pid=2**22 + 12345, age=old)  # Above pid_max's default.
    never_started = _cluster(tmp_path, "never", pid=None, age=old)
    alive = _cluster(tmp_path, "alive", pid=os.getpid(), age=old)
    fresh = _cluster(tmp_path, "fresh", pid=None, age=0)
    unrelated = tmp_path / "other-dir"
    unrelated.mkdir()
    os.utime(unrelated, (time.time() - old, time.time() - old))

    pg_server._sweep_stale(tmp_path)

    assert not dead.exists()
    assert not never_started.exists()
    assert alive.exists()
    assert fresh.exists()
    assert unrelated.exists()
