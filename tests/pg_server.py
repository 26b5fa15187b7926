"""A throwaway PostgreSQL server for the tests: its own cluster in a temporary directory, on
127.0.0.1 and a free port, with fsync off (nothing here needs to survive a crash).

PostgreSQL refuses to run as root, so when the tests are root (CI containers) initdb and the
server run as the `postgres` system user (or `nobody`), owning the directory. The server is a
child of the test process and gets SIGINT (fast shutdown) if that process dies, so a killed run
leaves no server behind.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from tests.servers import die_with_parent, free_port, wait_until_up

__all__ = ["PostgresServer", "PostgresUnavailable", "find_bin_dir", "postgres_required"]

T = TypeVar("T")

#: Where Debian and Ubuntu put each major version's server binaries (not on PATH).
DEBIAN_BINS = Path("/usr/lib/postgresql")
#: A cluster plus a few live test databases fit well inside this (Docker's default is 64 MiB).
SHM_NEEDED = 1 << 30
PREFIX = "tts-pg-"
#: Seconds after which a cluster directory without a live server is a killed run's leftover.
STALE_AFTER = 600


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine, or they would not start."""


def postgres_required() -> bool:
    """In CI a missing PostgreSQL fails the run: skipping would hide half the storage tests."""
    return any(
        os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}
        for name in ("CI", "REQUIRE_POSTGRES")
    )


def find_bin_dir() -> Path | None:
    """The newest directory holding both initdb and postgres: $PG_BIN, Debian's layout, PATH."""
    candidates: list[Path] = []
    if override := os.environ.get("PG_BIN"):
        candidates.append(Path(override))
    versions = [path for path in DEBIAN_BINS.glob("*/bin") if path.parent.name.isdigit()]
    candidates += sorted(versions, key=lambda path: int(path.parent.name), reverse=True)
    if found := shutil.which("initdb"):
        candidates.append(Path(found).resolve().parent)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    return None


def _run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even while a test's event loop exists:
    in a thread of its own, with a loop of its own."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def _scratch_parent() -> str | None:
    """RAM-backed /dev/shm when it has room: creating a database per test is ten times faster
    there than on a busy disk. Otherwise the usual temporary directory."""
    shm = Path("/dev/shm")
    try:
        roomy = shm.is_dir() and shutil.disk_usage(shm).free >= SHM_NEEDED
    except OSError:
        roomy = False
    return str(shm) if roomy and os.access(shm, os.W_OK) else None


def _sweep_stale(parent: Path) -> None:
    """Remove clusters left by killed runs (their server died with them, the files did not;
    in /dev/shm they would hold memory): old, and with no live server."""
    for directory in parent.glob(f"{PREFIX}*"):
        try:
            if time.time() - directory.stat().st_mtime < STALE_AFTER:
                continue
            pid_file = directory / "data" / "postmaster.pid"
            if pid_file.exists():
                os.kill(int(pid_file.read_text().split()[0]), 0)
                continue  # Alive: another session's server.
        except ProcessLookupError:
            pass
        except (OSError, ValueError, IndexError):
            continue
        shutil.rmtree(directory, ignore_errors=True)


class PostgresServer:
    """One cluster for the whole session; `create_database` gives each test a fresh database."""

    def __init__(self, bin_dir: Path, *, start_timeout: float = 60.0) -> None:
        self.bin_dir = bin_dir
        self.start_timeout = start_timeout
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self.directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self._ids = self._unprivileged_ids()

    @staticmethod
    def _unprivileged_ids() -> tuple[int, int] | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            return entry.pw_uid, entry.pw_gid
        raise PostgresUnavailable("running as root and no `postgres` or `nobody` user to drop to")

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://postgres:{secret}@127.0.0.1:{self.port}/{database}"

    # Lifecycle.

    def start(self) -> None:
        parent = _scratch_parent()
        _sweep_stale(Path(parent or tempfile.gettempdir()))
        self.directory = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        self._own(self.directory)
        pwfile = self.directory / "password"
        pwfile.write_text(self.password + "\n")
        self._own(pwfile)
        initdb = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                f"--pgdata={self.directory / 'data'}",
                "--username=postgres",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            check=False,
            **self._as_user(),
        )
        pwfile.unlink()
        if initdb.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {initdb.stderr.strip()[-500:]}")
        for _ in range(5):  # Another process may take the free port before the server does.
            if self._launch(free_port()):
                return
        raise PostgresUnavailable(f"the server would not start: {self._log_tail()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # Fast shutdown: disconnects clients.
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def halt(self) -> None:
        """Shut the server down as an operator would (fast shutdown: clients are disconnected
        mid-statement), keeping its cluster and port for `resume`."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)

    def resume(self) -> None:
        """Start the halted server again, on the same port: clients reconnect to it. Call it
        from a thread that outlives the server (the test's own): the server is told to stop
        when the thread that started it ends."""
        if self._process is None and not self._launch(self.port):
            raise PostgresUnavailable(f"the server would not restart: {self._log_tail()}")

    def _launch(self, port: int) -> bool:
        assert self.directory is not None
        log = self.directory / "server.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    str(self.bin_dir / "postgres"),
                    "-D",
                    str(self.directory / "data"),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"port={port}",
                    "-c",
                    f"unix_socket_directories={self.directory}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(signal.SIGINT),
                **self._as_user(),
            )
        self._process, self.port = process, port
        up = wait_until_up(process, self._accepts_connections, self.start_timeout, 0.05)
        if up is not None:
            if not up:
                self._process = None
            return up
        self.stop()
        raise PostgresUnavailable(f"the server did not start in {self.start_timeout:g} s")

    def _accepts_connections(self) -> bool:
        async def probe() -> bool:
            try:
                conn = await asyncpg.connect(self.url(), timeout=5)
            except (OSError, asyncpg.CannotConnectNowError):
                return False
            await conn.close()
            return True

        return _run_async(probe)

    # Databases.

    def create_database(self) -> tuple[str, str]:
        """A new empty database (from template0, as on a fresh server): its name and URL."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE template0 STRATEGY FILE_COPY")
        return name, self.url(name)

    def drop_database(self, name: str) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def admin(self, sql: str, *args: Any) -> Any:
        """Run one statement as the superuser on the `postgres` database; returns its status."""
        return self.run(lambda conn: conn.execute(sql, *args))

    def run(self, action: Callable[[asyncpg.Connection[asyncpg.Record]], Awaitable[T]]) -> T:
        """Call `action` with a superuser connection to the `postgres` database, from sync code."""

        async def go() -> T:
            conn = await asyncpg.connect(self.url())
            try:
                return await action(conn)
            finally:
                await conn.close()

        return _run_async(go)

    # Helpers.

    def _as_user(self) -> dict[str, Any]:
        if self._ids is None:
            return {"cwd": self.directory}
        uid, gid = self._ids
        return {"user": uid, "group": gid, "extra_groups": [], "cwd": self.directory}

    def _own(self, path: Path) -> None:
        path.chmod(0o700 if path.is_dir() else 0o600)
        if self._ids is not None:
            os.chown(path, *self._ids)

    def _log_tail(self) -> str:
        if self.directory is None or not (self.directory / "server.log").exists():
            return "no log"
        return (self.directory / "server.log").read_text(errors="replace").strip()[-800:]
