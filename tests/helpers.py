"""Shared test helpers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from tests.fake_segmind import FakeSegmind


@contextlib.contextmanager
def fake_segmind_in_thread(**kwargs: Any) -> Iterator[FakeSegmind]:
    """Run the fake server on its own loop, for code under test that calls `asyncio.run`.

    Configure it (enqueue faults, set credits) only while the code under test is not running.
    """
    loop = asyncio.new_event_loop()
    fake = FakeSegmind(**kwargs)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(fake.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="fake-segmind", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the fake Segmind server did not start")
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
