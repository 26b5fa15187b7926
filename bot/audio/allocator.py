"""Large buffers given back to the system as soon as they are freed.

Every answer passes through buffers of megabytes (the body, its samples, the Ogg Opus made of
them) on the event loop's thread and the executor's. Once glibc has freed one such buffer it
serves that size from its heaps instead (its mmap threshold follows the largest buffer freed,
up to 32 MiB), and each thread's arena then keeps megabytes it no longer uses: 33-54 MiB of
the bot's memory with a WAV upstream and a full cache (`python -m bench.memory`). A fixed
threshold keeps every large buffer mapped on its own and unmapped the moment it is freed; the
price is a page fault per 4 KiB of each new one, about 0.1 ms a megabyte.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["LARGE_BUFFER", "map_large_buffers"]

#: Buffers of this size and more are mapped on their own: a decoding batch (256 KiB) and up.
LARGE_BUFFER = 256 * 1024
_M_MMAP_THRESHOLD = -3  # from glibc's <malloc.h>


def map_large_buffers(threshold: int = LARGE_BUFFER) -> bool:
    """Have glibc's malloc map buffers of ``threshold`` bytes or more on their own, returned
    to the system when freed, for the rest of the process; False, with nothing changed, under
    any other C library (musl's `mallopt` does nothing; others have none)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library the interpreter runs on
        libc.gnu_get_libc_version  # noqa: B018  # only glibc has it
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
