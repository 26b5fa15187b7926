"""A storm of 502s: does the scheduler lose requests when a third of the calls fail?

For each seed, `--requests` requests go at once through the real `Scheduler` and
`SegmindClient` to the fake server in a process of its own (`bench.scheduler_server`), which
answers each call 502 with probability `--fail-rate` (after the normal latency, seeded). The
scheduler retries 5xx with back-off until each request's deadline (MAX_ATTEMPTS=0), with its
time settings scaled like the window (60 s → `--window`). Prints lost and attempts per seed.

    python -m bench.scheduler_storm [--seeds 10] [--fail-rate 0.3] [--requests 50]
        [--rpm 50] [--window 2] [--latency 0.6]

Target: 0 requests lost over all seeds. Exits 1 if missed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import aiohttp

from bench.scheduler_server import KEY, ServerProcess
from bot.errors import BotError
from bot.speech.access import Requester
from bot.speech.request import SpeechRequest
from bot.synthesis.client import SegmindClient
from bot.synthesis.scheduler import Attempt, Scheduler, SchedulerConfig

REAL_WINDOW = 60.0


async def one_seed(args: argparse.Namespace, seed: int) -> tuple[int, int, int, float]:
    """Lost, calls made, 502s answered, and seconds taken, for one seed."""
    scale = args.window / REAL_WINDOW
    config = SchedulerConfig(
        rpm=args.rpm,
        window=args.window,
        user_cooldown=0,
        max_waiting_per_user=args.requests,
        max_queue=max(200, args.requests),
        initial_latency=args.latency,
        job_timeout=14 * 60 * scale,
        backoff_base=1.0 * scale,
        backoff_max=60.0 * scale,
    )
    statuses: list[int | None] = []

    def on_attempt(attempt: Attempt) -> None:
        statuses.append(attempt.status)

    server = ["--rpm", str(args.rpm), "--window", str(args.window)]
    server += ["--latency", str(args.latency), "--fail-rate", str(args.fail_rate)]
    async with ServerProcess(*server, "--seed", str(seed)) as fake, aiohttp.ClientSession() as s:
        client = SegmindClient(s, api_key=KEY, base_url=fake.base_url)
        scheduler = Scheduler(client.synthesize, config, on_attempt=on_attempt)
        scheduler.start()
        began = time.monotonic()
        tickets = [
            scheduler.submit(SpeechRequest(text=f"s{seed} r{n}"), Requester(1))
            for n in range(args.requests)
        ]
        outcomes = await asyncio.gather(*(t.result() for t in tickets), return_exceptions=True)
        took = time.monotonic() - began
        await scheduler.close()
    lost = sum(isinstance(o, BotError | asyncio.CancelledError) for o in outcomes)
    return lost, len(statuses), statuses.count(502), took


async def run(args: argparse.Namespace) -> bool:
    print(
        f"{args.requests} requests per seed at {args.rpm} per {args.window:g} s, "
        f"{args.latency:g} s calls, {args.fail_rate:.0%} answered 502"
    )
    total_lost = 0
    for seed in range(args.seeds):
        lost, calls, failed, took = await one_seed(args, seed)
        total_lost += lost
        print(
            f"seed {seed}: lost {lost}, calls {calls}, 502s {failed} "
            f"({failed / max(1, calls):.0%}), {took:.1f} s"
        )
    print(f"lost over {args.seeds} seeds: {total_lost}")
    met = total_lost == 0
    print(f"targets met: {'yes' if met else 'NO'}")
    return met


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scheduler_storm", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--fail-rate", type=float, default=0.3)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--rpm", type=int, default=50)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--latency", type=float, default=0.6)
    args = parser.parse_args(argv)
    if not asyncio.run(run(args)):
        sys.exit(1)


if __name__ == "__main__":
    main()
