"""The fake Segmind server for the scheduler benches, in a process of its own.

Latency matters to these benches (the makespan of a burst is calls of 1.8 s fitting a 6 s
window), so the server must not share the bot's event loop or core. This wraps
`tests.fake_segmind.FakeSegmind` with what the scenarios need: the limit's window
(`--window`), 429s without reset headers (`--no-reset`), and a seeded storm of 502s
(`--fail-rate`, `--seed`), each answered after the normal latency, as a gateway would.

    python -m bench.scheduler_server --rpm 5 --window 6 --latency 1.8 [--no-reset]
                                     [--fail-rate 0.3 --seed 1] [--shape ogg]

It prints `SEGMIND_BASE_URL=...` and serves until killed. `ServerProcess` starts it from a
bench; `best_makespan` is the bound a burst is measured against.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
from typing import Any

from aiohttp import web

from bench.fake_process import FakeServerProcess
from tests.fake_segmind import FakeSegmind, Shape, status

__all__ = ["KEY", "BenchSegmind", "ServerProcess", "best_makespan", "main", "percentile"]

KEY = "bench-key"
_RESET_HEADERS = ("retry-after", "x-rate-limit-reset-at-utc")


def best_makespan(requests: int, rpm: int, window: float, latency: float) -> float:
    """The least time `requests` calls submitted at once can take under `rpm` per `window`.

    The server's sliding window admits call k (0-based) no sooner than (k // rpm) * window
    after the first; the last one then takes `latency`. No scheduler can beat this.
    """
    return (requests - 1) // rpm * window + latency


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


class BenchSegmind(FakeSegmind):
    """The fake server, with 429s optionally bare and a seeded storm of 502s."""

    def __init__(
        self,
        *,
        rpm_limit: int | None,
        rpm_window: float,
        latency: float,
        reset_headers: bool = True,
        fail_rate: float = 0.0,
        seed: int = 0,
        shape: Shape = Shape.WAV,
    ) -> None:
        super().__init__(
            api_key=KEY,
            shape=shape,
            latency=latency,
            rpm_limit=rpm_limit,
            rpm_window=rpm_window,
            credits=1e9,
            shutdown_timeout=0.05,
        )
        self.reset_headers = reset_headers
        self.fail_rate = fail_rate
        self._random = random.Random(seed)

    async def _handle_tts(self, request: web.Request) -> web.StreamResponse:
        if self.fail_rate and self._random.random() < self.fail_rate:
            # Taken by the handler before its first await, so it is this request's fault.
            self.enqueue(status(502).delayed(self.latency))
        return await super()._handle_tts(request)

    async def _handle_not_found(self, request: web.Request) -> web.Response:
        """`GET /v1/bench-stats`: what the key was asked and answered, for benches in other
        processes (calls, 429s, successes, and texts paid more than once)."""
        if request.path.endswith("/bench-stats"):
            paid: dict[str, int] = {}
            for record in self.requests:
                if record.status == 200 and isinstance(record.json_body, dict):
                    text = str(record.json_body.get("text"))
                    paid[text] = paid.get(text, 0) + 1
            return web.json_response(
                {
                    "calls": self.tts_calls,
                    "rate_limited": sum(1 for r in self.requests if r.status == 429),
                    "successes": self.successes,
                    "paid_twice": sum(1 for count in paid.values() if count > 1),
                    # `?records=1`: each call's arrival (the machine's monotonic clock, which
                    # every process shares), answer and text, for benches judging windows.
                    **({"records": self._records()} if request.query.get("records") else {}),
                }
            )
        return await super()._handle_not_found(request)

    def _records(self) -> list[dict[str, Any]]:
        return [
            {
                "received": record.received,
                "status": record.status,
                "text": str(record.json_body.get("text"))
                if isinstance(record.json_body, dict)
                else "",
            }
            for record in self.requests
        ]

    def _admit(self, key: str) -> Any:
        answer = super()._admit(key)
        if answer is not None and not self.reset_headers:
            for name in list(answer.headers):
                if name.lower() in _RESET_HEADERS:
                    del answer.headers[name]
        return answer


def ServerProcess(*args: str) -> FakeServerProcess:
    """`python -m bench.scheduler_server ...` as an async context manager; `base_url` once up."""
    return FakeServerProcess(*args, module="bench.scheduler_server")


async def _serve(args: argparse.Namespace) -> None:
    fake = BenchSegmind(
        latency=args.latency,
        rpm_limit=args.rpm,
        rpm_window=args.window,
        reset_headers=not args.no_reset,
        fail_rate=args.fail_rate,
        seed=args.seed,
        shape=Shape(args.shape),
    )
    async with fake:
        print(f"SEGMIND_BASE_URL={fake.base_url}", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scheduler_server")
    parser.add_argument("--rpm", type=int, default=None, help="the key's real limit")
    parser.add_argument("--window", type=float, default=60.0, help="the limit's window (s)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per call")
    parser.add_argument("--no-reset", action="store_true", help="429s without reset headers")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="fraction answered 502")
    parser.add_argument("--seed", type=int, default=0, help="seed of the 502 storm")
    parser.add_argument(
        "--shape", choices=[s.value for s in Shape], default="wav", help="how audio is answered"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
