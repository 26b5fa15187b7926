"""The fake Segmind server in a process of its own, for benches whose figures must not count
the API side's work (making audio) against the bot's cores, threads or event loop."""

from __future__ import annotations

import asyncio
import sys
from types import TracebackType

__all__ = ["FakeServerProcess"]


class FakeServerProcess:
    """`python -m MODULE ARGS…` (the fake Segmind server by default) on a free port of
    127.0.0.1, stopped on exit; `base_url` is what it printed once it listens."""

    def __init__(self, *args: str, module: str = "tests.fake_segmind") -> None:
        self.args = args
        self.module = module
        self.process: asyncio.subprocess.Process | None = None
        self.base_url = ""

    async def __aenter__(self) -> FakeServerProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, *self.args, stdout=asyncio.subprocess.PIPE
        )
        assert self.process.stdout is not None
        async with asyncio.timeout(30):
            while not self.base_url:
                line = (await self.process.stdout.readline()).decode()
                if not line:
                    raise RuntimeError("the fake server did not start")
                if line.startswith("SEGMIND_BASE_URL="):
                    self.base_url = line.strip().split("=", 1)[1]
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.process is not None:
            self.process.terminate()
            await self.process.wait()
