"""A throwaway Redis server for the tests and benches: 127.0.0.1, a free port, a temporary
directory, no persistence (nothing here needs to survive), stopped at the end.

Like the PostgreSQL one (`pg_server.py`) it is a child of its starter and gets SIGTERM if that
process dies, so a killed run leaves no server behind; without redis-server installed the
tests that need it skip locally and fail in CI (`CI` or `REQUIRE_REDIS` set).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.servers import die_with_parent, free_port, wait_until_up

__all__ = ["RedisServer", "RedisUnavailable", "find_redis_server", "redis_required"]


class RedisUnavailable(RuntimeError):
    """No redis-server on this machine, or it would not start."""


def redis_required() -> bool:
    """In CI a missing Redis fails the run: skipping would hide the cluster tests."""
    return any(
        os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}
        for name in ("CI", "REQUIRE_REDIS")
    )


def find_redis_server() -> Path | None:
    """$REDIS_SERVER, or redis-server on PATH (Debian puts it in /usr/bin)."""
    if override := os.environ.get("REDIS_SERVER"):
        return Path(override)
    found = shutil.which("redis-server")
    return Path(found) if found else None


class RedisServer:
    """One server; `url(db)` for a client. Start with `start()`, end with `stop()`."""

    def __init__(
        self, binary: Path, *, start_timeout: float = 30.0, args: Sequence[str] = ()
    ) -> None:
        self.binary = binary
        #: More redis-server options (`--requirepass`, `--user`).
        self.args = list(args)
        self.start_timeout = start_timeout
        self.port = 0
        self.directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, port: int | None = None) -> None:
        """On `port` (a Redis that comes up where the bot already looks), else a free one."""
        self.directory = Path(tempfile.mkdtemp(prefix="tts-redis-"))
        for _ in range(5):  # Another process may take the free port before the server does.
            if self._launch(port or free_port()):
                return
        log = (self.directory / "server.log").read_text(errors="replace")[-800:]
        self.stop()
        raise RedisUnavailable(f"redis-server would not start: {log}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a hung server would not hear SIGTERM
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def hang(self) -> None:
        """SIGSTOP: the server keeps its port and accepts connections, but answers nothing."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def _launch(self, port: int) -> bool:
        assert self.directory is not None
        with (self.directory / "server.log").open("wb") as sink:
            process = subprocess.Popen(
                [
                    str(self.binary),
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--dir",
                    str(self.directory),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "yes",
                    "--databases",
                    "1000",
                    *self.args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        self._process, self.port = process, port
        up = wait_until_up(process, self._answers, self.start_timeout, 0.02)
        if up is not None:
            if not up:
                self._process = None
            return up
        self.stop()
        raise RedisUnavailable(f"redis-server did not start in {self.start_timeout:g} s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                answer = conn.recv(64)
                # A server with a password answers NOAUTH: up all the same.
                return answer.startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False
