"""What the suite's throwaway servers (PostgreSQL, Redis) share: a free port on 127.0.0.1, a
child that dies with the tests, and waiting until the server answers or gives up."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

__all__ = ["die_with_parent", "free_port", "wait_until_up"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """A `preexec_fn` that has the kernel send `sig` to the server when the tests die, so a
    killed run leaves no server behind (Linux only; elsewhere None)."""
    if sys.platform != "linux":
        return None

    def arrange() -> None:  # pragma: no cover - runs in the child between fork and exec
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG

    return arrange


def wait_until_up(
    process: subprocess.Popen[bytes], answers: Callable[[], bool], timeout: float, step: float
) -> bool | None:
    """True once `answers()`, False if the process ended first (e.g. its port was taken),
    None if neither happened within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if answers():
            return True
        time.sleep(step)
    return None
