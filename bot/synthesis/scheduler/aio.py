"""Small asyncio helpers for the scheduler, so no task it starts outlives what started it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

__all__ = ["cancel_and_wait", "first_of"]


async def first_of(*awaitables: Awaitable[Any]) -> None:
    """Wait until any of `awaitables` is done, then cancel the rest and wait for them."""
    waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(a) for a in awaitables}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(*waiters)


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel tasks and wait until they have really finished, so nothing outlives its owner.

    `asyncio.wait` neither raises the tasks' errors nor swallows a cancellation of the caller.
    """
    pending = {task for task in tasks if task is not None and not task.done()}
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved
